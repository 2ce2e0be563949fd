"""The run's loggers and their bookkeeping across restarts: one W&B run id per run folder, CSV rows kept on resume."""

from __future__ import annotations

import csv
import logging
import os
import uuid
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from datamodules.atomic_writes import atomic_path, atomic_write_text

log = logging.getLogger(__name__)


def build_loggers(cfg: DictConfig, resume_from: str | None = None) -> list[Any]:
    """The configured loggers. W&B gets a run id kept in the run dir (one run across restarts and resumes);
    when resuming, the CSV logger keeps the rows logged before the checkpoint instead of starting a new file."""
    loggers = []
    for name, lg in (cfg.get("logger") or {}).items():
        if lg is None:
            continue
        if name == "wandb":
            os.makedirs(cfg.paths.run_dir, exist_ok=True)
            if lg.get("id") is None:
                lg = OmegaConf.merge(lg, {"id": wandb_run_id(cfg.paths.run_dir)})
        logger = hydra.utils.instantiate(lg)
        if isinstance(logger, pl.loggers.WandbLogger):
            quiet_wandb_init(logger)
        if resume_from is not None and isinstance(logger, pl.loggers.CSVLogger):
            keep_csv_history(logger)
        loggers.append(logger)
    return loggers


WANDB_ID_FILE = "wandb_run_id.txt"


def quiet_wandb_init(logger: Any) -> None:
    """Drop the two ``wandb.init`` arguments W&B only warns about: ``anonymous=None`` (Lightning always passes it;
    W&B: "has no effect") and, offline, ``resume`` (an offline run never resumes on the server; the shared run id
    is what ``wandb sync`` joins on)."""
    init = getattr(logger, "_wandb_init", None)
    if not isinstance(init, dict):
        return
    if init.get("anonymous") is None:
        init.pop("anonymous", None)
    if getattr(logger, "_offline", False) or os.environ.get("WANDB_MODE") in ("offline", "dryrun"):
        init.pop("resume", None)


def wandb_run_id(run_dir: str) -> str:
    """The W&B run id of this run dir: made on the first start and stored in ``<run dir>/wandb_run_id.txt``, read
    back on every later start (a resume, a SLURM requeue), so the logger continues the same run (resume=allow).
    Only rank 0 writes the file; other ranks do not log to W&B."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    path = os.path.join(run_dir, WANDB_ID_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            run_id = f.read().strip()
        if run_id:
            return run_id
    run_id = uuid.uuid4().hex[:12]
    if getattr(rank_zero_only, "rank", 0) == 0:
        atomic_write_text(path, run_id + "\n")
    return run_id


def keep_csv_history(logger: Any) -> None:
    """Lightning's CSVLogger deletes an existing metrics.csv when it starts. On a resume keep the rows logged
    before: they are written back at once, and when the resumed run first saves, old rows at or after its first
    step are dropped (the steps between the checkpoint and a crash are logged again by the resumed run)."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0:
        return
    path = os.path.join(logger.log_dir, "metrics.csv")
    if not os.path.isfile(path):
        return
    with open(path, newline="") as f:
        old = [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    writer = logger.experiment  # creating the writer deletes the old file
    _write_csv(path, old)
    writer_save = writer.save

    def save_with_history() -> None:
        new = writer.metrics
        steps = [int(m["step"]) for m in new if "step" in m]
        if not steps:  # nothing logged yet (e.g. the hyperparameters being saved): wait for the first step
            writer_save()
            return
        writer.save = writer_save
        first = min(steps)
        # a row without a readable step is a line cut short by a kill: dropped with the rows the resume re-logs
        rows = [r for r in old if (step := _csv_step(r)) is not None and step < first] + new
        keys = _write_csv(path, rows)
        writer.metrics, writer.metrics_keys = [], keys
        writer_save()  # the rest of Lightning's save (hparams.yaml), with no rows left to write
        log.info("CSV log %s: %d rows from before the resume, new rows from step %s", path, len(rows) - len(new),
                 first)

    writer.save = save_with_history


def _csv_step(row: dict[str, Any]) -> int | None:
    try:
        return int(float(row["step"]))
    except (KeyError, TypeError, ValueError):
        return None


def _write_csv(path: str, rows: list[dict[str, Any]]) -> list[str]:
    keys = sorted(set().union(*rows)) if rows else []
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return keys

