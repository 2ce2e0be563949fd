"""Load the studio's checkpoints once, each with the config stored in it, through the inference loaders."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from lightning_modules.checkpoints import read_record
from lightning_modules.loading import inference_config
from lightning_modules.stages import StageError
from tasks.config import ConfigError


@dataclass
class LoadedCheckpoint:
    """A checkpoint's path, model, stage and the config that rebuilds its networks (``cfg.task`` = the studio's)."""

    path: str
    model: str
    stage: str
    cfg: DictConfig


def checkpoint_paths(value: Any) -> list[str]:
    """``task.ckpt_path``: one path or a list of paths -> the list, each an existing file."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    paths = [value] if isinstance(value, (str, os.PathLike)) else list(value or [])
    if not paths:
        raise ConfigError("task=studio needs task.ckpt_path=<checkpoint> or task.ckpt_path=[<ckpt>,<ckpt>]")
    for path in paths:
        if not os.path.isfile(str(path)):
            raise FileNotFoundError(f"task.ckpt_path: {path} does not exist; pass the path of a trained checkpoint")
    return [str(p) for p in paths]


def checkpoint_config(path: str, studio_cfg: DictConfig, panels: Mapping[str, Any]) -> LoadedCheckpoint:
    """The config that rebuilds the run that wrote ``path`` (the project's ``conf/`` for its model, stage and size
    with the checkpoint's stored values: :func:`lightning_modules.loading.inference_config`), with the studio's
    task section and ``task.ckpt_path=path``. Raises a StageError for a
    checkpoint of a model that has no panel."""
    record = read_record(path)
    model, stage = record.model, record.stage
    if model is None or stage is None:
        raise StageError(f"{path} has no condsynth metadata (model, stage): pass a checkpoint written by run.py")
    if model not in panels:
        raise StageError(
            f"{path} is a '{model}' checkpoint, and the studio has panels for {sorted(panels)} only: pass a "
            f"checkpoint of one of those models (or add a panel for {model} to task.panels)"
        )
    cfg = inference_config(record)  # rebuilt from conf/ with the checkpoint's values: its config is data
    with open_dict(cfg):
        cfg.task = copy.deepcopy(studio_cfg.task)
        cfg.task.ckpt_path = path
        cfg.trainer = OmegaConf.merge(cfg.get("trainer") or {}, studio_cfg.get("trainer") or {})
    return LoadedCheckpoint(path=path, model=str(model), stage=str(stage), cfg=cfg)
