"""task=export: a trained model of ``task.ckpt_path`` as files for use elsewhere.

* ``task.format=safetensors`` (every model): a shareable bundle folder, ``model.safetensors`` (the inference
  weights) + ``config.json`` + ``SHA256SUMS`` (:mod:`lightning_modules.bundles`); ``lightning_modules.load(<folder>)``
  loads it and checks the hashes.
* ``torchscript`` / ``onnx``: the paper's trained network as one file checked against eager, by the paper's own
  exporter, ``tasks/<model>/export.py``.

The model comes from the checkpoint (:func:`tasks.cli.checkpoint_overrides`).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from omegaconf import DictConfig

from lightning_modules.bundles import write_bundle
from lightning_modules.checkpoints import read_record
from tasks.inference import load_for_inference, require_checkpoint


def export_bundle(cfg: DictConfig) -> str:
    """Write the safetensors bundle of ``task.ckpt_path`` to ``task.output`` (default ``<run dir>/bundle``)."""
    ckpt_path = require_checkpoint(cfg)
    module = load_for_inference(cfg, ckpt_path)
    folder = str(cfg.task.get("output") or os.path.join(str(cfg.paths.run_dir), "bundle"))
    hashes = write_bundle(module, read_record(ckpt_path), folder)
    print(f"\ncondsynth: bundle of {ckpt_path} (model {cfg.model.name}, stage {cfg.stage.name}) written to {folder}: "
          + ", ".join(f"{name} sha256 {digest[:16]}..." for name, digest in hashes.items())
          + f". Load it with: from lightning_modules import load; load({folder!r})")
    return folder


def export(cfg: DictConfig) -> Any:
    """``task.format=safetensors``: :func:`export_bundle`; otherwise ``tasks.<model>.export.export(cfg)``."""
    if str(cfg.task.get("format")) == "safetensors":
        return export_bundle(cfg)
    model = str(cfg.model.name)
    try:
        exporter = importlib.import_module(f"tasks.{model}.export")
    except ModuleNotFoundError as err:
        raise ValueError(f"task=export task.format={cfg.task.get('format')} has no exporter for model={model} "
                         f"(tasks/{model}/export.py); task.format=safetensors exports every model") from err
    return exporter.export(cfg)
