"""The project's ``conf/`` outside a Hydra run (the loader, notebooks, scripts, tests): its resolvers and
:func:`compose_config`. Below the tasks, so the checkpoint loader can rebuild a model from ``conf/``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config that cannot work, reported at start-up."""


def _pick(key: Any, table: Any) -> Any:
    """``${cs.pick:<key>,{a: 1, b: 2}}``: the table's value for ``key`` (a per-option value without arithmetic)."""
    table = OmegaConf.to_container(table) if OmegaConf.is_config(table) else dict(table)
    if key not in table:
        raise ConfigError(f"{key!r} is not one of {sorted(table)}")
    return table[key]


def _output_subdir(ckpt_path: Any, now: str) -> str:
    """Hydra's record of a run (``.hydra/``: config, overrides): a resume (``ckpt_path`` set) writes its own
    ``.hydra/resume_<time>/`` next to the original instead of overwriting it."""
    return ".hydra" if ckpt_path in (None, "None", "null") else f".hydra/resume_{now}"


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
        "cs.pick": _pick,
        "cs.output_subdir": _output_subdir,
        "cs.wandb_offline": _wandb_offline,
        "cs.devices": _devices,
        "cs.gpus_per_node": _gpus_per_node,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_config(overrides: Sequence[str] = (), run_dir: str | os.PathLike | None = None) -> DictConfig:
    """The config ``run.py`` would compose for ``overrides``, outside a Hydra run (notebooks, scripts, tests), with
    ``paths.run_dir`` set to ``run_dir`` when given."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    overrides = list(overrides) + ([f"paths.run_dir={run_dir}"] if run_dir is not None else [])
    if GlobalHydra.instance().is_initialized():  # inside run.py's Hydra app (e.g. the studio): its conf/ is ours
        return compose(config_name="config", overrides=overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)
