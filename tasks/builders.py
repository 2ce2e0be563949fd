"""Builders shared by the tasks: datamodule, callbacks, strategy and trainer."""

from __future__ import annotations

import logging
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from lightning_modules.callbacks import AtomicCheckpointIO, PreemptionCheckpoint, ResumeState
from lightning_modules.factory import safe_instantiate

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    dm_cfg = OmegaConf.to_container(cfg.dataset, resolve=True)
    for key in ("name", "model"):  # bookkeeping keys, not datamodule arguments
        dm_cfg.pop(key, None)
    return safe_instantiate(dm_cfg, "dataset", _convert_="all")


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    return [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def build_strategy(cfg: DictConfig) -> Any:
    strategy = cfg.get("strategy") or {}
    if "_target_" not in strategy:
        return strategy.get("name", "auto")
    kwargs = {k: v for k, v in strategy.items() if k != "name"}
    return hydra.utils.instantiate(kwargs)


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback] | None = None,
                  loggers: list[Any] | None = None, optimizer_steps_per_batch: int = 1) -> pl.Trainer:
    """The configured Trainer, with atomic checkpoint writes and checkpoint-then-requeue on SLURM's signal
    (``PreemptionCheckpoint``, into the run's checkpoint dir). Lightning's own SLURM auto-requeue is switched off:
    submitit (hydra/launcher=slurm) owns the signal and the requeue, and the two must not both act.

    ``trainer.max_steps``/``min_steps`` count batches (the project's one "step"); Lightning counts optimizer steps,
    so they are multiplied by the module's ``optimizer_steps_per_batch`` (2 for a GAN: G and D)."""
    callbacks = list(callbacks or [])
    if not loggers:  # logger=none: Lightning's LearningRateMonitor refuses a Trainer without a logger
        monitors = [c for c in callbacks if isinstance(c, pl.callbacks.LearningRateMonitor)]
        if monitors:
            log.info("logger=none: the learning-rate monitor (callbacks.lr_monitor) is off, it has nowhere to log")
            callbacks = [c for c in callbacks if c not in monitors]
    if not any(isinstance(c, PreemptionCheckpoint) for c in callbacks):
        callbacks.append(PreemptionCheckpoint(dirpath=str(cfg.paths.checkpoint_dir)))
    if not any(isinstance(c, ResumeState) for c in callbacks):
        callbacks.append(ResumeState())  # a resume continues at the same step with the same random state
    step_limits = {key: int(cfg.trainer[key]) * optimizer_steps_per_batch for key in ("max_steps", "min_steps")
                   if cfg.trainer.get(key) is not None and int(cfg.trainer[key]) > 0}
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        **step_limits,
        callbacks=callbacks,
        logger=loggers if loggers else False,
        strategy=build_strategy(cfg),
        plugins=[AtomicCheckpointIO()],
    )
    from lightning_fabric.plugins.environments import SLURMEnvironment

    # the environment Lightning's signal connector reads (single-device strategies do not expose one)
    for env in (getattr(trainer._accelerator_connector, "cluster_environment", None),
                getattr(trainer.strategy, "cluster_environment", None)):
        if isinstance(env, SLURMEnvironment):
            env.auto_requeue = False
    return trainer

