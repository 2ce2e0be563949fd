"""Builders shared by the tasks: module, datamodule, trainer, loggers, callbacks, checkpoints."""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from lightning_modules.base import SynthesisModule
from lightning_modules.callbacks import AtomicCheckpointIO
from lightning_modules.stages import StageError, StageSpec, check_stage_start, read_checkpoint

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, for_inference: bool = False) -> SynthesisModule:
    """Instantiate the paper's LightningModule from ``cfg.model.module`` (networks and losses included).

    ``for_inference``: weights come from a checkpoint afterwards, so the stage's init checkpoint is skipped.
    """
    module_cfg = cfg.model.module
    if for_inference:
        module_cfg = OmegaConf.create(OmegaConf.to_container(module_cfg, resolve=True))
        with open_dict(module_cfg):
            module_cfg.stage.init_from = None
            module_cfg.stage.requires_init = False
    else:
        check_stage_start(StageSpec.from_config(OmegaConf.to_container(cfg.stage, resolve=True)))
    try:
        module = hydra.utils.instantiate(module_cfg, _convert_="partial")
    except InstantiationException as err:
        # surface our own clear errors (bad stage checkpoint, bad sizes) instead of Hydra's wrapper
        if isinstance(err.__cause__, (ValueError, FileNotFoundError)):
            raise err.__cause__ from None
        raise
    module.run_config = resolved_config(cfg)
    return module


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


def build_loggers(cfg: DictConfig) -> list[Any]:
    loggers = []
    for name, lg in (cfg.get("logger") or {}).items():
        if lg is None:
            continue
        if name == "wandb":
            os.makedirs(cfg.paths.run_dir, exist_ok=True)
        loggers.append(hydra.utils.instantiate(lg))
    return loggers


def build_strategy(cfg: DictConfig) -> Any:
    strategy = cfg.get("strategy") or {}
    if "_target_" not in strategy:
        return strategy.get("name", "auto")
    kwargs = {k: v for k, v in strategy.items() if k != "name"}
    return hydra.utils.instantiate(kwargs)


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback] | None = None,
                  loggers: list[Any] | None = None) -> pl.Trainer:
    return hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks or [],
        logger=loggers if loggers else False,
        strategy=build_strategy(cfg),
        plugins=[AtomicCheckpointIO()],
    )


def readable_checkpoint(path: str) -> bool:
    try:
        read_checkpoint(path)
        return True
    except StageError as err:
        log.warning("%s", err)
        return False


def resolve_resume_path(cfg: DictConfig) -> str | None:
    """``ckpt_path``: None (fresh run), a file, or "last" (checkpoints/last.ckpt of this run dir).

    A truncated or unreadable checkpoint is reported and the newest readable one in the same folder is used.
    """
    ckpt = cfg.get("ckpt_path")
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
