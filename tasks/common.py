"""Builders shared by the tasks: module, datamodule, trainer, loggers, callbacks, checkpoints."""

from __future__ import annotations

import csv
import glob
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from datamodules.files import atomic_path, atomic_write_text
from lightning_modules.base import SynthesisModule
from lightning_modules.callbacks import AtomicCheckpointIO, PreemptionCheckpoint, slurm_restart_count
from lightning_modules.speed import apply_speed_config
from lightning_modules.stages import StageError, read_checkpoint

log = logging.getLogger(__name__)


#: keys every model config has that are not constructor arguments: read by run names, validation, the datamodule;
#: ``test_metrics`` (optional): a factory ``(cfg, module) -> metrics`` of the model's own task=test metrics
MODEL_BOOKKEEPING_KEYS = ("name", "stages", "size_multiple", "test_metrics", "from_checkpoint")


def build_module(cfg: DictConfig, for_inference: bool = False) -> SynthesisModule:
    """Instantiate the paper's LightningModule from ``cfg.model`` (its constructor: ``_target_`` at the root,
    networks, losses, optimizer and scheduler factories nested), leaving out the bookkeeping keys.

    The stage's start (its previous checkpoint given and present) is checked once, at start-up, by
    :func:`tasks.config.validate_config`.

    ``for_inference``: weights come from a checkpoint afterwards, so the stage's init checkpoint is skipped.
    """
    module_cfg = OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True))
    with open_dict(module_cfg):
        for key in MODEL_BOOKKEEPING_KEYS:
            module_cfg.pop(key, None)
        if for_inference:
            module_cfg.stage.init_from = None
            module_cfg.stage.requires_init = False
    try:
        module = hydra.utils.instantiate(module_cfg, _convert_="partial")
    except InstantiationException as err:
        # surface our own clear errors (bad stage checkpoint, bad sizes) instead of Hydra's wrapper
        if isinstance(err.__cause__, (ValueError, FileNotFoundError)):
            raise err.__cause__ from None
        raise
    module.run_config = resolved_config(cfg)
    return apply_speed_config(module, cfg.get("speed"))


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's config with interpolations resolved (what checkpoints and loggers store); unresolvable keys
    (e.g. ``${hydra:...}`` outside a Hydra run) are kept as written."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - fall back to the unresolved form rather than fail a run
        return OmegaConf.to_container(cfg, resolve=False)


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    dm_cfg = OmegaConf.to_container(cfg.dataset, resolve=True)
    for key in ("name", "model"):  # bookkeeping keys, not datamodule arguments
        dm_cfg.pop(key, None)
    return hydra.utils.instantiate(dm_cfg, _convert_="all")


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    return [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


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
    if not any(isinstance(c, PreemptionCheckpoint) for c in callbacks):
        callbacks.append(PreemptionCheckpoint(dirpath=str(cfg.paths.checkpoint_dir)))
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


def readable_checkpoint(path: str) -> bool:
    try:
        read_checkpoint(path)
        return True
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


def load_for_inference(cfg: DictConfig, ckpt_path: str) -> SynthesisModule:
    """Build the module of the configured model/stage and load a checkpoint's weights strictly."""
    ckpt = read_checkpoint(ckpt_path)
    meta = ckpt.get("condsynth", {})
    if meta.get("model") not in (None, cfg.model.name):
        raise StageError(f"{ckpt_path} is a '{meta.get('model')}' checkpoint; run with model={meta.get('model')}")
    if meta.get("stage") not in (None, cfg.stage.name):
        raise StageError(
            f"{ckpt_path} was trained in stage '{meta.get('stage')}', but this run builds stage '{cfg.stage.name}': "
            f"add stage={meta.get('stage')} so the networks match"
        )
    module = build_module(cfg, for_inference=True)
    state = module.restore_non_persistent(dict(ckpt["state_dict"]))
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise StageError(
            f"{ckpt_path} does not fit the configured networks: missing {list(missing)[:5]}, unexpected "
            f"{list(unexpected)[:5]}; use the same model sizes (size=..., model.*) as the training run"
        )
    module.eval()
    return module


# ------------------------------------------------------------------------------- inference helpers
def progress(iterable: Any, desc: str, total: int | None = None, unit: str = "it") -> Any:
    """A progress bar (items done, rate, ETA) on stderr for a long task's loop; quiet when stderr is not a terminal
    (CI, logs, pipes)."""
    import sys

    from tqdm.auto import tqdm

    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not sys.stderr.isatty(), leave=False,
                dynamic_ncols=True)



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
