"""Callbacks shared by all papers: periodic sample grids (rank 0 only) and atomic checkpoint writes."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from lightning_modules.visualize import image_grid, save_grid

log = logging.getLogger(__name__)


class SampleGridCallback(pl.Callback):
    """Every ``every_n_steps`` training batches, write ``samples/step_XXXXXX.png`` (label | generated | real)
    from a fixed batch, and send it to the loggers that take images (W&B, TensorBoard)."""

    def __init__(self, dirpath: str, every_n_steps: int = 100, max_images: int = 4, on_train_end: bool = True):
        self.dirpath = dirpath
        self.every_n_steps = int(every_n_steps)
        self.max_images = int(max_images)
        self.write_on_train_end = on_train_end
        self._batch: dict[str, Any] | None = None
        self.written: list[str] = []
        self._batches = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._collect(batch)
        self._batches += 1
        if self.every_n_steps > 0 and (self._batches - 1) % self.every_n_steps == 0:
            self.write(trainer, pl_module, trainer.global_step)

    def _collect(self, batch: dict[str, Any]) -> None:
        """Keep the first ``max_images`` training samples (over several batches when batches are small)."""
        have = 0 if self._batch is None else next(
            v.shape[0] for v in self._batch.values() if isinstance(v, torch.Tensor))
        if have >= self.max_images:
            return
        take = {k: (v[: self.max_images - have].detach().cpu().clone() if isinstance(v, torch.Tensor)
                    else list(v)[: self.max_images - have]) for k, v in batch.items()}
        if self._batch is None:
            self._batch = take
        else:
            self._batch = {k: (torch.cat([self._batch[k], v]) if isinstance(v, torch.Tensor) else self._batch[k] + v)
                           for k, v in take.items()}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.write_on_train_end and self._batch is not None:
            self.write(trainer, pl_module, trainer.global_step, name="final")

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int, name: str | None = None) -> None:
        if not trainer.is_global_zero or self._batch is None:
            return
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            batch = {k: (v.to(pl_module.device) if isinstance(v, torch.Tensor) else v)
                     for k, v in self._batch.items()}
            rows = pl_module.sample_images(batch)
        pl_module.train(was_training)
        grid = image_grid(rows, self.max_images)
        path = save_grid(grid, os.path.join(self.dirpath, f"{name or f'step_{step:06d}'}.png"))
        self.written.append(path)
        caption = " | ".join(rows)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[grid], step=step, caption=[caption])
            elif hasattr(logger, "experiment") and hasattr(logger.experiment, "add_image"):
                logger.experiment.add_image("samples", grid, global_step=step)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to ``<path>.tmp``, fsync, then rename: a kill mid-write never leaves a truncated .ckpt."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, str(path))


def atomic_torch_save(obj: Any, path: str) -> None:
    """torch.save to ``<path>.tmp``, fsync, then rename over ``path``: readers never see a partial file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
