"""task=import_official: the official code's weight files -> one ordinary condsynth checkpoint.

    python run.py task=import_official model=pix2pixhd task.files=[checkpoints/label2city_1024p/latest_net_G.pth]
    python run.py task=import_official model=lst task.files=[models/vgg_r41.pth,models/dec_r41.pth,models/r41.pth]

A folder in ``task.files`` stands for its official files (pix2pixHD: ``latest_net_{G,E,D}.pth`` present; LST:
``vgg_<level>.pth``, ``dec_<level>.pth``, ``<level>.pth`` with ``task.level``). The paper's converter
(``tasks/<model>/official.py``) reads the official options from the shapes (and
``task.options`` for what shapes cannot tell), picks the stage and the config keys that rebuild the same networks;
the module is built with them, every network is filled by name through the paper's key table (every key and shape
checked, one error for all that is missing or left over), and the checkpoint is written with the config those keys
give: the loader rebuilds the same networks from it as from any checkpoint (``lightning_modules.load``,
``task.ckpt_path=<it>``); ``stage.init_from=<it>`` works with the matching experiment config.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor

from datamodules.atomic_writes import atomic_path
from lightning_modules.checkpoints import update_meta
from lightning_modules.factory import build_module, resolved_config
from networks.official import map_official_state, strip_data_parallel
from networks.weights import read_state_dict
from tasks.config import CONF_DIR

log = logging.getLogger(__name__)



@dataclasses.dataclass
class Part:
    """One network of the module (``attr``) filled from one official file."""

    attr: str
    state: Mapping[str, Tensor]
    official_name: Callable[[str], str]
    source: str
    what: str


@dataclasses.dataclass
class ImportPlan:
    """What a paper's converter decides: the stage, the config keys (dotted key -> value) that rebuild the official
    networks, keys set only while building (e.g. no VGG loss network), the parts to fill, notes for the log, and the
    official options it read."""

    stage: str
    overrides: dict[str, Any]
    parts: list[Part]
    build_only: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


def override_strings(overrides: Mapping[str, Any]) -> list[str]:
    """``key=value`` command-line overrides (booleans lower-case, as Hydra writes them)."""
    def text(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return [f"{k}={text(v)}" for k, v in overrides.items()]


def read_official_files(paths: list[str]) -> dict[str, dict[str, Tensor]]:
    """path -> state dict (``module.`` prefixes dropped), each file read with a clear error."""
    states = {}
    for path in paths:
        state = read_state_dict(path, "official")
        if "state_dict" in state or not all(isinstance(v, Tensor) for v in state.values()):
            raise ValueError(f"task.files: {path} is not an official weights file (a plain state dict of tensors); "
                             f"a condsynth checkpoint needs no import: pass it as task.ckpt_path or stage.init_from")
        states[path] = strip_data_parallel(state)
    return states


def stage_config(model: str, stage: str) -> DictConfig:
    """The stage's own config file, conf/model_stages/<model>/<stage>.yaml."""
    path = Path(CONF_DIR) / "model_stages" / model / f"{stage}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"model {model} has no stage config {path}")
    stage_cfg = OmegaConf.load(path)
    with open_dict(stage_cfg):
        stage_cfg.pop("defaults", None)
    return stage_cfg


def configure(cfg: DictConfig, stage: str, overrides: Mapping[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with the model's stage ``stage`` and the dotted ``overrides`` set."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(out):
        if out.stage.name != stage:
            out.stage = stage_config(str(cfg.model.name), stage)
        for key, value in overrides.items():
            OmegaConf.update(out, key, value, merge=False, force_add=True)
    return out


def write_checkpoint(module: pl.LightningModule, plan: ImportPlan, files: list[str], path: str) -> str:
    """An ordinary condsynth checkpoint (Lightning layout: state_dict + condsynth metadata) written atomically."""
    ckpt: dict[str, Any] = {"state_dict": module.state_dict(), "epoch": 0, "global_step": 0,
                            "pytorch-lightning_version": pl.__version__}
    module.on_save_checkpoint(ckpt)
    update_meta(ckpt, official={"files": [os.path.abspath(f) for f in files], "options": plan.options})
    with atomic_path(path, keep_extension=True) as tmp:
        torch.save(ckpt, tmp)
    return path


def import_official(cfg: DictConfig) -> str:
    """Convert ``task.files`` to ``task.output`` (default ``<run dir>/checkpoints/last.ckpt``); returns the path."""
    model = str(cfg.model.name)
    try:
        converter = importlib.import_module(f"tasks.{model}.official")  # the paper's converter
    except ModuleNotFoundError as err:
        raise ValueError(f"task=import_official has no converter for model={model} (tasks/{model}/official.py); "
                         f"models with one: {list(cfg.task.models)}") from err
    files = converter.expand_files([str(f) for f in cfg.task.files], cfg.task)
    states = read_official_files(files)
    given = cfg.task.get("options")
    given = OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else dict(given or {})
    options = {k: v for k, v in given.items() if v is not None}
    plan: ImportPlan = converter.plan(states, options, cfg.task)

    run_cfg = configure(cfg, plan.stage, plan.overrides)
    # built as for inference (the model's own `inference` overrides: no loss networks, no ImageNet file reads; the
    # official weights fill the rest), plus what the paper's plan adds
    inference = cfg.model.get("inference")
    build_only = {f"model.{k}": v for k, v in (OmegaConf.to_container(inference) if inference is not None else {}).items()}
    build_cfg = configure(run_cfg, plan.stage, {**build_only, **plan.build_only})
    module = build_module(build_cfg, for_inference=True)
    module.run_config = resolved_config(run_cfg)
    for part in plan.parts:
        network = getattr(module, part.attr)
        mapped = map_official_state(network, part.state, part.official_name, part.source, part.what)
        network.load_state_dict(mapped, strict=True)
        log.info("%s: %d tensors from %s", part.attr, len(mapped), part.source)
    for note in plan.notes:
        log.info("%s", note)

    path = str(cfg.task.get("output") or os.path.join(str(cfg.paths.checkpoint_dir), "last.ckpt"))
    write_checkpoint(module, plan, files, path)
    keys = " ".join(override_strings(plan.overrides))
    print(f"\ncondsynth: wrote {path} (model {model}, stage {plan.stage}) from {len(files)} official file(s); "
          f"its networks: {keys}. Use it as task.ckpt_path=<it> (these keys are applied from the checkpoint) or "
          f"stage.init_from=<it> with the same keys")
    return path
