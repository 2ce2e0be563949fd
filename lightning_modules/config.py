"""Config plumbing shared by run.py, the tasks and the tests: OmegaConf resolvers and start-up validation."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _num(x: Any) -> int | float:
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, str):
        return float(x) if "." in x else int(x)
    return x


def _wandb_offline() -> bool:
    """Offline unless WANDB_MODE=online or an API key is configured."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("online", "run"):
        return False
    if mode in ("offline", "dryrun", "disabled"):
        return True
    return not bool(os.environ.get("WANDB_API_KEY"))


def _devices(devices: Any) -> int:
    if isinstance(devices, int):
        return devices
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    return 1  # "auto": one task per node; set trainer.devices explicitly for multi-GPU jobs


def _gpus_per_node(accelerator: Any, devices: Any) -> int | None:
    """GPUs to ask SLURM for: trainer.devices on GPUs; None on CPUs (no --gpus-per-node flag at all)."""
    return _devices(devices) if str(accelerator) in ("gpu", "cuda") else None


def register_resolvers() -> None:
    """Idempotent: safe to call from run.py, tasks and tests."""
    resolvers = {
        "cs.add": lambda *xs: sum(_num(x) for x in xs),
        "cs.mul": lambda *xs: __import__("math").prod(_num(x) for x in xs),
        "cs.wandb_offline": _wandb_offline,
        "cs.devices": _devices,
        "cs.gpus_per_node": _gpus_per_node,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


class ConfigError(ValueError):
    """A config that cannot work, reported at start-up."""


def validate_config(cfg: DictConfig) -> None:
    """Checks that need no data: model/stage pairing, required stage inputs, task arguments."""
    model, stage = cfg.model.name, cfg.stage.name
    valid = list(cfg.model.get("stages", []))
    if cfg.stage.model != model or stage not in valid:
        raise ConfigError(
            f"stage '{stage}' does not belong to model '{model}' (it is a '{cfg.stage.model}' stage). "
            f"Valid stages for model={model}: {valid}; e.g. python run.py model={model} stage={valid[0]}"
        )
    data_model = cfg.dataset.get("model")
    if data_model is not None and data_model != model:
        raise ConfigError(
            f"dataset '{cfg.dataset.name}' feeds model '{data_model}', not '{model}': pick a dataset of model={model} "
            f"(its default is dataset=default_for_{model}) or model={data_model}"
        )
    supported = cfg.task.get("models")
    if supported is not None and model not in supported:
        raise ConfigError(
            f"task={cfg.task.name} does not run model={model}; it runs model={'|'.join(supported)} "
            f"(tasks for {model}: see conf/task/*.yaml, key `models`)"
        )
    if cfg.task.name == "train":
        from lightning_modules.stages import StageSpec, check_stage_start

        check_stage_start(StageSpec.from_config(OmegaConf.to_container(cfg.stage, resolve=True)))
    _validate_lst_inference(cfg)
    for key in ("ckpt_path",):
        # `key in cfg` is False for a ??? value, so test for "missing" first
        if key in cfg.task.keys() and OmegaConf.is_missing(cfg.task, key):
            raise ConfigError(
                f"task={cfg.task.name} needs task.{key}=<path to a .ckpt> (e.g. outputs/runs/<run>/checkpoints/last.ckpt)"
            )
        if key in cfg.task and not os.path.isfile(str(cfg.task[key])):
            raise ConfigError(f"task.{key}={cfg.task[key]} does not exist; pass the path of a trained checkpoint")


# LST inference tasks: the keys each needs (besides task.ckpt_path), with what to pass
_LST_INFERENCE_KEYS = {
    "stylize": {"content": "an image file or folder", "style": "an image file or folder"},
    "stylize_video": {"input": "a video file or a folder of frames", "style": "a style image"},
    "export": {},
}


def _validate_lst_inference(cfg: DictConfig) -> None:
    """task=stylize / stylize_video / export: their required keys set (``???`` or null)."""
    task = cfg.task.name
    if task not in _LST_INFERENCE_KEYS:
        return
    wanted = {"ckpt_path": "path to an LST checkpoint of stage transform", **_LST_INFERENCE_KEYS[task]}
    for key, what in wanted.items():
        if OmegaConf.is_missing(cfg.task, key) or cfg.task.get(key) is None:
            raise ConfigError(f"task={task} needs task.{key}=<{what}>")
