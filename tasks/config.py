"""Start-up validation of a composed config (the resolvers and ``compose_config`` live in
:mod:`lightning_modules.composition` and are re-exported here for the tasks and tests)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lightning_modules.composition import CONF_DIR, ConfigError, compose_config, register_resolvers

__all__ = ["CONF_DIR", "ConfigError", "compose_config", "register_resolvers", "validate_config", "note_demo_size"]


def validate_config(cfg: DictConfig) -> None:
    """Checks that need no data: model/stage pairing, required stage inputs, task arguments."""
    model, stage = cfg.model.name, cfg.stage.name
    valid = list(cfg.model.get("stages", []))
    if cfg.stage.get("model") != model or stage not in valid:
        owner = f" (it is a stage of {cfg.stage.model})" if cfg.stage.get("model") else ""
        raise ConfigError(
            f"stage '{stage}' does not belong to model '{model}'{owner}: there is no conf/model_stages/{model}/{stage}.yaml. "
            f"Valid stages for model={model}: {valid}; e.g. python run.py model={model} stage={valid[0]}"
        )
    data_model = cfg.dataset.get("model")
    if data_model is not None and data_model != model:
        raise ConfigError(
            f"dataset '{cfg.dataset.name}' feeds model '{data_model}', not '{model}': pick a dataset of model={model} "
            f"(its default is dataset=default_for_{model}) or model={data_model}"
        )
    if str(cfg.dataset.name).startswith("synthetic") and cfg.dataset.get("root") is not None:
        real = sorted(p.stem for p in (Path(CONF_DIR) / "dataset").glob("*.yaml")
                      if not p.stem.startswith(("synthetic", "default_for_"))
                      and OmegaConf.load(p).get("model") == model)
        raise ConfigError(
            f"dataset.root={cfg.dataset.root} is set, but dataset={cfg.dataset.name} generates its data and reads no "
            f"folder: add dataset=<{'|'.join(real) or 'a real dataset'}> to train on {cfg.dataset.root}"
        )
    supported = cfg.task.get("models")
    if supported is not None and model not in supported:
        raise ConfigError(
            f"task={cfg.task.name} does not run model={model}; it runs model={'|'.join(supported)} "
            f"(tasks for {model}: see conf/task/*.yaml, key `models`)"
        )
    if cfg.task.name == "train":
        from lightning_modules.stages import StageSpec, check_stage_start

        spec = StageSpec.from_config(OmegaConf.to_container(cfg.stage, resolve=True))
        if cfg.model.get("official_weights"):  # the official weights fill what the previous stage would have
            spec.requires_init = False
        check_stage_start(spec)
    _validate_task_keys(cfg)
    from tasks.threads import parse_setting

    parse_setting(cfg.get("threads", "auto"))
    note_demo_size(cfg)
    ckpts = cfg.task.get("ckpt_path")
    for ckpt in (list(ckpts) if OmegaConf.is_list(ckpts) else [ckpts]):  # task=studio takes a list
        if ckpt is not None and not os.path.isfile(str(ckpt)):
            raise ConfigError(f"task.ckpt_path={ckpt} does not exist; pass the path of a trained checkpoint")


def note_demo_size(cfg: DictConfig) -> str | None:
    """A real dataset (one with a ``root``) at ``size=demo`` runs the demo's small widths and images: say so, and
    name the paper's setting. Returns the message (None when it does not apply)."""
    if cfg.get("size", {}).get("name") != "demo" or cfg.dataset.get("root") in (None, "None", "null"):
        return None
    shape = cfg.dataset.get("image_size", cfg.dataset.get("crop_size"))
    message = (f"dataset={cfg.dataset.name} with size=demo: the model runs the demo's small network widths and "
               f"image size ({OmegaConf.to_container(shape) if OmegaConf.is_config(shape) else shape}); for the "
               f"paper's setting add size=paper (or an experiment=... recipe)")
    logging.getLogger("condsynth").warning(message)
    return message


def _validate_task_keys(cfg: DictConfig) -> None:
    """Every ``???`` key of the task config must be set. A task names what to pass in its ``needs`` map
    (``conf/task/<task>.yaml``); ``ckpt_path`` always means a trained checkpoint."""
    hints = {"ckpt_path": "path to a trained .ckpt, e.g. outputs/train/<model>_<stage>/latest/checkpoints/last.ckpt",
             **dict(cfg.task.get("needs") or {})}
    for key in cfg.task.keys():
        if OmegaConf.is_missing(cfg.task, key) or (key in hints and cfg.task.get(key) is None):
            raise ConfigError(f"task={cfg.task.name} needs task.{key}=<{hints.get(key, 'a value')}>")
