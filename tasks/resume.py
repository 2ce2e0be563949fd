"""Which checkpoint a training run resumes from (``ckpt_path``, SLURM requeues, unreadable files)."""

from __future__ import annotations

import glob
import logging
import os

from omegaconf import DictConfig

from lightning_modules.callbacks import slurm_restart_count
from lightning_modules.checkpoints import UnsafeCheckpointError, read_checkpoint
from lightning_modules.stages import StageError

log = logging.getLogger(__name__)


def readable_checkpoint(path: str) -> bool:
    """Whether ``path`` reads (safely). A file refused as unsafe stops the run: it is never skipped for another."""
    try:
        read_checkpoint(path)
        return True
    except UnsafeCheckpointError:
        raise
    except StageError as err:
        log.warning("%s", err)
        return False


def resolve_resume_path(cfg: DictConfig) -> str | None:
    """``ckpt_path``: None (fresh run), a file, or "last" (checkpoints/last.ckpt of this run dir).

    A SLURM job that was requeued (``SLURM_RESTART_COUNT`` > 0: preemption, time limit, node failure) resumes from
    its own run dir's checkpoints/last.ckpt whatever ``ckpt_path`` says, when that file exists.
    A truncated or unreadable checkpoint is reported and the newest readable one in the same folder is used.
    """
    ckpt = cfg.get("ckpt_path")
    restarts = slurm_restart_count()
    if restarts and os.path.exists(os.path.join(cfg.paths.checkpoint_dir, "last.ckpt")):
        log.info("SLURM requeued this job (restart %d): resuming from %s/last.ckpt", restarts,
                 cfg.paths.checkpoint_dir)
        ckpt = "last"
    if ckpt is None:
        return None
    if ckpt == "last":
        ckpt = os.path.join(cfg.paths.checkpoint_dir, "last.ckpt")
        if not os.path.exists(ckpt):
            log.info("ckpt_path=last: no %s yet, starting fresh", ckpt)
            return None
    if not os.path.isfile(ckpt):
        raise FileNotFoundError(
            f"ckpt_path={ckpt} does not exist; pass a checkpoint of this run (checkpoints/last.ckpt) or "
            f"ckpt_path=last with hydra.run.dir=<the run dir>"
        )
    if readable_checkpoint(ckpt):
        log.info("resuming from %s", ckpt)
        return ckpt
    folder = os.path.dirname(os.path.abspath(ckpt))
    candidates = sorted(glob.glob(os.path.join(folder, "*.ckpt")), key=os.path.getmtime, reverse=True)
    for cand in candidates:
        if os.path.abspath(cand) != os.path.abspath(ckpt) and readable_checkpoint(cand):
            log.warning("checkpoint %s is unreadable (truncated?); resuming from %s instead", ckpt, cand)
            return cand
    raise StageError(f"{ckpt} is unreadable and no other readable checkpoint is in {folder}")

