"""Training stages: which sub-networks train, which are frozen, and which checkpoint a stage starts from.

Every paper trains in stages (pix2pixHD: global -> local -> joint; LST: decoder -> transform; EDN: body -> face;
X2Face: photometric -> identity -> ...). A stage config names sub-networks by dotted *part names* that the
LightningModule resolves to modules (e.g. ``generator.global`` -> the local enhancer's G1 body). This module holds
the paper-independent pieces: freezing, and loading a previous stage's checkpoint with explicit key reporting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used, so that start-up's stage check stays quick (run.py)
    import torch
    from torch import nn

log = logging.getLogger(__name__)


class StageError(ValueError):
    """A stage cannot start: wrong model/stage pair, missing or wrong checkpoint."""


@dataclass
class StageSpec:
    """What a stage trains. Built from the ``stage`` config group."""

    name: str
    model: str
    trainable: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    init_from: str | None = None
    previous: str | None = None
    requires_init: bool = False
    key_map: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> StageSpec:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        data = {k: v for k, v in dict(cfg).items() if k in known}
        extra = {k: v for k, v in dict(cfg).items() if k not in known}
        for key in ("trainable", "frozen"):
            data[key] = list(data.get(key) or [])
        data["key_map"] = dict(data.get("key_map") or {})
        return cls(**data, extra=extra)


def set_requires_grad(modules: Iterable[nn.Module], flag: bool) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(flag)


def apply_freezing(resolve: Callable[[str], list[nn.Module]], spec: StageSpec) -> None:
    """Freeze the stage's ``frozen`` parts and make its ``trainable`` parts require grad.

    ``frozen`` wins over ``trainable`` when a part is both (e.g. ``generator`` trainable, ``generator.global``
    frozen: the local enhancer trains, G1 does not).
    """
    for part in spec.trainable:
        set_requires_grad(resolve(part), True)
    for part in spec.frozen:
        set_requires_grad(resolve(part), False)


def check_stage_start(spec: StageSpec) -> None:
    """Fail before any data is touched when a stage needs a previous checkpoint it was not given."""
    if spec.init_from is None:
        if spec.requires_init:
            raise StageError(
                f"stage '{spec.name}' of model '{spec.model}' starts from the '{spec.previous}' stage's checkpoint, "
                f"but stage.init_from is not set. Train it first (python run.py model={spec.model} "
                f"stage={spec.previous}) and pass stage.init_from=<that run>/checkpoints/last.ckpt"
            )
        return
    if not os.path.isfile(spec.init_from):
        raise StageError(
            f"stage.init_from={spec.init_from} does not exist: pass the path of the '{spec.previous}' stage's "
            f"checkpoint (e.g. outputs/<run>/checkpoints/last.ckpt)"
        )


def load_stage_checkpoint(
    module: nn.Module,
    spec: StageSpec,
    expected_missing: Mapping[str, str] | None = None,
    expected_unused: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Initialise ``module`` from the previous stage's checkpoint (``spec.init_from``).

    Keys are renamed with ``spec.key_map`` (prefix -> prefix), then loaded strictly: every key of the module
    must be filled except those whose prefix is in ``expected_missing`` (new in this stage), and every key of the
    checkpoint must be used except prefixes in ``expected_unused``. Each group is logged with its reason; anything
    else is an error naming the keys, so a wrong checkpoint never half-loads silently.
    """
    from lightning_modules.checkpoints import read_record

    assert spec.init_from is not None
    if not os.path.isfile(spec.init_from):
        raise StageError(f"stage.init_from={spec.init_from} does not exist: pass the path of the '{spec.previous}' "
                         f"stage's checkpoint (e.g. outputs/<run>/checkpoints/last.ckpt)")
    record = read_record(spec.init_from)
    ck_model, ck_stage = record.model, record.stage
    if ck_model is not None and ck_model != spec.model:
        raise StageError(
            f"{spec.init_from} was trained with model '{ck_model}', but this run is model '{spec.model}': "
            f"pass a '{spec.model}' checkpoint of stage '{spec.previous}'"
        )
    if spec.previous is not None and ck_stage is not None and ck_stage not in (spec.previous, spec.name):
        raise StageError(
            f"{spec.init_from} is a checkpoint of stage '{ck_stage}'; stage '{spec.name}' starts from stage "
            f"'{spec.previous}' (or resumes from '{spec.name}'): pass that stage's checkpoint"
        )
    expected_missing = dict(expected_missing or {})
    expected_unused = dict(expected_unused or {})
    source: dict[str, torch.Tensor] = {}
    for key, value in record.state_dict.items():
        for old, new in spec.key_map.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        source[key] = value
    target = module.state_dict()
    if hasattr(module, "restore_non_persistent"):
        module.restore_non_persistent(source)
    unused = sorted(k for k in source if k not in target)
    missing = sorted(k for k in target if k not in source)
    bad_shape = sorted(k for k in source if k in target and source[k].shape != target[k].shape)

    def _unexplained(keys: list[str], explained: Mapping[str, str]) -> list[str]:
        return [k for k in keys if not any(k.startswith(p) for p in explained)]

    errors = []
    if bad_shape:
        errors.append(f"shape mismatch for {bad_shape[:5]} (e.g. {source[bad_shape[0]].shape} vs "
                      f"{target[bad_shape[0]].shape}): the checkpoint was built with other network sizes")
    if miss := _unexplained(missing, expected_missing):
        errors.append(f"{len(miss)} weights missing from the checkpoint, e.g. {miss[:5]}")
    if extra := _unexplained(unused, expected_unused):
        errors.append(f"{len(extra)} checkpoint weights have no place in this model, e.g. {extra[:5]}")
    if errors:
        raise StageError(
            f"cannot start stage '{spec.name}' from {spec.init_from}: " + "; ".join(errors)
            + ". Check that model and network sizes match the previous stage's run"
        )
    module.load_state_dict({k: v for k, v in source.items() if k in target}, strict=False)
    for prefix, why in expected_missing.items():
        n = sum(k.startswith(prefix) for k in missing)
        if n:
            log.info("stage %s: %d new weights under '%s' (%s)", spec.name, n, prefix, why)
    for prefix, why in expected_unused.items():
        n = sum(k.startswith(prefix) for k in unused)
        if n:
            log.info("stage %s: %d checkpoint weights under '%s' not used (%s)", spec.name, n, prefix, why)
    log.info("stage %s: loaded %d weights from %s", spec.name, len(target) - len(missing), spec.init_from)
    return {"missing": missing, "unused": unused}
