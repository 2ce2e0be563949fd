"""task=export: the trained network of ``task.ckpt_path`` as one TorchScript or ONNX file, checked against eager.
The model comes from the checkpoint (:func:`tasks.cli.checkpoint_overrides`); the paper's own exporter,
``tasks/<model>/export.py``, does the work."""

from __future__ import annotations

import importlib
from typing import Any

from omegaconf import DictConfig


def export(cfg: DictConfig) -> Any:
    """Run ``tasks.<model>.export.export(cfg)``."""
    model = str(cfg.model.name)
    try:
        exporter = importlib.import_module(f"tasks.{model}.export")
    except ModuleNotFoundError as err:
        raise ValueError(f"task=export has no exporter for model={model} (tasks/{model}/export.py); models with one: "
                         f"{list(cfg.task.models)}") from err
    return exporter.export(cfg)
