"""task=train: fit the configured model/stage on the dataset, with checkpoints and sample grids."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from omegaconf import DictConfig

from lightning_modules.callbacks import SampleGridCallback, checkpoint_training_steps, training_steps
from lightning_modules.checkpoints import read_checkpoint, read_record
from lightning_modules.factory import build_module, resolved_config
from lightning_modules.stages import StageError
from tasks.builders import build_callbacks, build_datamodule, build_trainer
from tasks.resume import resolve_resume_path
from tasks.run_logs import build_loggers

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Returns the module's last validation score (``module.sweep_metric``, or None) so sweeps can compare runs."""
    resume = resolve_resume_path(cfg)
    if resume is not None:
        warn_changed_settings(cfg, resume)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")  # every data error (unreadable files, label ids, sizes) before the model and Trainer
    module = build_module(cfg)
    callbacks = build_callbacks(cfg)
    loggers = build_loggers(cfg, resume_from=resume)
    for lg in loggers:
        lg.log_hyperparams(module.run_config)
    trainer = build_trainer(cfg, callbacks, loggers, optimizer_steps_per_batch=module.optimizer_steps_per_batch)
    log.info("training model=%s stage=%s dataset=%s in %s", cfg.model.name, cfg.stage.name, cfg.dataset.name,
             cfg.paths.run_dir)
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    except SIGTERMException as err:  # Lightning's own stop (e.g. during validation) exits 0: a script reads success
        raise SystemExit(128 + signal.SIGTERM) from err
    if cfg.task.get("test_after_fit"):
        trainer.test(module, datamodule=datamodule)
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        ckpt_dir = cfg.paths.checkpoint_dir
        samples = cfg.paths.sample_dir
        n_samples = len(os.listdir(samples)) if os.path.isdir(samples) else 0
        grids = next((c for c in callbacks if isinstance(c, SampleGridCallback)), None)
        rows = getattr(grids, "caption", None)
        stages = list(cfg.model.get("stages", []))
        index = stages.index(cfg.stage.name) if cfg.stage.name in stages else len(stages)
        following = stages[index + 1] if index + 1 < len(stages) else None
        use = (f"stage={following} stage.init_from=<it> starts the next stage; ckpt_path=last resumes this one"
               if following else "the inference tasks take it (task.ckpt_path=<it>); ckpt_path=last resumes")
        steps = _final_step(trainer, ckpt_dir)
        optimizer_steps = (f" ({steps * module.optimizer_steps_per_batch} optimizer steps: "
                           f"{module.optimizer_steps_per_batch} per batch)" if module.optimizer_steps_per_batch > 1 else "")
        print(f"\ncondsynth: finished {cfg.model.name}/{cfg.stage.name} at step {steps}{optimizer_steps}")
        print(f"  checkpoints: {ckpt_dir}  (last.ckpt: {use})")
        print(f"  samples:     {samples}  ({n_samples} PNG grids" + (f", rows: {rows})" if rows else ")"))
        print(f"  logs:        {cfg.paths.run_dir}")
        if metrics:
            print("  metrics:     " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return metrics.get(module.sweep_metric)


def _final_step(trainer: Any, ckpt_dir: str) -> int:
    """The steps (batches) done; with ddp_spawn/ddp_fork the training ran in child processes and this process's
    trainer still says 0, so read it from the rolling last.ckpt they wrote."""
    last = os.path.join(ckpt_dir, "last.ckpt")
    if trainer.global_step == 0 and os.path.isfile(last):
        try:
            return checkpoint_training_steps(read_checkpoint(last))
        except StageError:
            return 0
    return training_steps(trainer)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


#: keys that differ between a run and its resume by design
_RESUME_KEYS_IGNORED = ("ckpt_path", "paths.", "hydra.")


def warn_changed_settings(cfg: DictConfig, ckpt_path: str) -> list[str]:
    """Resuming with settings that differ from the checkpoint's stored config: warn, listing each difference."""
    stored = read_record(ckpt_path).config
    if not stored:
        return []
    old, new = _flat(stored), _flat(resolved_config(cfg))
    changed = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
               if not key.startswith(_RESUME_KEYS_IGNORED) and old.get(key) != new.get(key)]
    if changed:
        log.warning("resuming %s with settings that differ from its checkpoint's: %s", ckpt_path, "; ".join(changed))
    return changed

