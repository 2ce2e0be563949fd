"""What the inference tasks share: the checkpoint of ``task.ckpt_path``, the device, progress bars."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig

from lightning_modules.base import SynthesisModule
from lightning_modules.checkpoints import CheckpointError, read_record
from lightning_modules.loading import build_from_record
from tasks.progress import progress

__all__ = ["inference_device", "load_for_inference", "progress", "require_checkpoint", "to_device"]


def load_for_inference(cfg: DictConfig, ckpt_path: str, training_networks: bool = False) -> SynthesisModule:
    """The module of ``ckpt_path`` through :func:`lightning_modules.loading.load`'s path (rebuilt from the config
    stored in it, weights loaded strictly, eval mode), after checking it is of the run's model and stage."""
    record = read_record(ckpt_path)
    if record.model not in (None, cfg.model.name):
        raise CheckpointError(f"{ckpt_path} is a '{record.model}' checkpoint; run with model={record.model}")
    if record.stage not in (None, cfg.stage.name):
        raise CheckpointError(
            f"{ckpt_path} was trained in stage '{record.stage}', but this run builds stage '{cfg.stage.name}': "
            f"add stage={record.stage} so the networks match"
        )
    return build_from_record(record, training_networks=training_networks)


# ------------------------------------------------------------------------------- inference helpers


def require_checkpoint(cfg: DictConfig) -> str:
    """``cfg.task.ckpt_path`` as a string, or a clear error naming the path when it is not a file."""
    path = cfg.task.get("ckpt_path")
    if path is None or not os.path.isfile(str(path)):
        raise FileNotFoundError(
            f"task.ckpt_path={path} does not exist; pass the path of a trained checkpoint "
            f"(e.g. outputs/train/<model>_<stage>/latest/checkpoints/last.ckpt)"
        )
    return str(path)


def inference_device(cfg: DictConfig) -> torch.device:
    """CUDA when available and the trainer config does not ask for the CPU."""
    accelerator = str(cfg.get("trainer", {}).get("accelerator", "auto"))
    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
