"""A trained model in one line: :func:`load` turns a checkpoint (or an exported bundle) into a ready module.

    from lightning_modules import load
    model = load("outputs/train/pix2pixhd_global/latest/checkpoints/last.ckpt")   # eval mode, no loss networks

The stored config is data from a file, so it is never instantiated as it is. The module is rebuilt from the
project's own ``conf/`` (the stored model, stage, size and dataset names, each checked to be an option), then the
stored values that differ from those defaults are set on top (:func:`stored_values`: plain values only, never a
``_target_``, an interpolation or a new key), then the model's own ``inference`` overrides (its
``conf/model/<model>.yaml``: the training-only loss networks left out). Every ``_target_`` is checked against
the allowlist before anything is built (:func:`lightning_modules.factory.check_targets`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from lightning_modules.checkpoints import CheckpointError, CheckpointRecord, read_record
from lightning_modules.composition import CONF_DIR, compose_config
from lightning_modules.factory import check_targets

log = logging.getLogger(__name__)

#: config groups whose stored option names pick files of ``conf/`` (``size`` and ``dataset`` only when present)
NAMED_GROUPS = ("model", "stage", "size", "dataset")
#: stored sections whose plain values are carried over onto the rebuilt config
STORED_SECTIONS = ("model", "stage", "dataset")
#: stored keys that come from a group picked by name instead (``model.stage`` is ``${stage}``)
FROM_GROUPS = ("model.stage.",)
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PLAIN = (bool, int, float, str, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, str):
        return "${" not in value and "\\" not in value
    if isinstance(value, list):
        return all(isinstance(v, _PLAIN) and _is_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def _option_exists(group: str, name: str, model: str) -> bool:
    conf = Path(CONF_DIR)
    if not _NAME.match(name):
        return False
    if group == "stage":
        return (conf / "model_stages" / model / f"{name}.yaml").is_file()
    return (conf / group / f"{name}.yaml").is_file()


def config_names(record: CheckpointRecord) -> list[str]:
    """``model=``, ``stage=`` (and ``size=``, ``dataset=`` when stored) overrides naming the checkpoint's options,
    each checked to be a file of ``conf/``."""
    model = record.model
    if model is None or record.stage is None:
        raise CheckpointError(f"{record.path} has no condsynth metadata (model, stage): pass a checkpoint written "
                              f"by run.py or task=import_official")
    if not _option_exists("model", model, model):
        models = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))
        raise CheckpointError(f"{record.path} is a checkpoint of model {model!r}, which this condsynth does not "
                              f"have (models: {', '.join(models)})")
    if not _option_exists("stage", record.stage, model):
        raise CheckpointError(f"{record.path}: stage {record.stage!r} is not a stage of model {model} (no "
                              f"conf/model_stages/{model}/{record.stage}.yaml)")
    names = [f"model={model}", f"stage={record.stage}"]
    for group in ("size", "dataset"):
        name = record.stored(group).get("name")
        if isinstance(name, str) and _option_exists(group, name, model):
            names.append(f"{group}={name}")
    return names


def _walk(stored: Any, default: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(stored, Mapping) and isinstance(default, Mapping):
        for key, value in stored.items():
            child = f"{path}.{key}"
            if key == "_target_":
                check_targets({key: value}, path)  # a stored target outside the allowlist: refused, by name
                continue
            if not isinstance(key, str) or not _KEY.match(key) or key not in default:
                continue  # Hydra's own keys, and keys this version's conf/ does not have: conf/ decides
            _walk(value, default[key], child, out)
        return
    if stored == default:
        return
    if isinstance(default, Mapping):
        if stored is None:  # a part switched off (e.g. model.losses.perceptual=null, the ablations)
            out[path] = None
        return
    if _is_plain(stored) and not isinstance(default, Mapping):
        out[path] = stored


def stored_values(record: CheckpointRecord, defaults: DictConfig) -> dict[str, Any]:
    """Dotted key -> the checkpoint's value, for every plain value of its stored ``model``, ``stage`` and ``dataset``
    sections
    that differs from ``defaults`` (the config composed from the stored names): the keys that shape its networks,
    whatever set them (a size, the command line, ``task=import_official``)."""
    out: dict[str, Any] = {}
    for section in STORED_SECTIONS:
        if section not in defaults:
            continue
        try:
            resolved = OmegaConf.to_container(defaults[section], resolve=True)
        except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra run: compare as written
            resolved = OmegaConf.to_container(defaults[section], resolve=False)
        _walk(record.stored(section), resolved or {}, section, out)
    return {k: v for k, v in out.items() if not k.startswith(FROM_GROUPS)}


def inference_config(record: CheckpointRecord, overrides: Mapping[str, Any] | None = None,
                     training_networks: bool = False) -> DictConfig:
    """The config that rebuilds ``record``'s networks from ``conf/`` (see the module's docstring); ``overrides``
    (dotted keys) are set last. ``training_networks``: keep the model's training-only networks."""
    cfg = compose_config(config_names(record))
    values = stored_values(record, cfg)
    with open_dict(cfg):
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False)
        if not training_networks:
            inference = cfg.model.get("inference")
            for key, value in (OmegaConf.to_container(inference) if inference is not None else {}).items():
                OmegaConf.update(cfg.model, key, value, merge=False)
        for key, value in (overrides or {}).items():
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def load_weights(module: Any, record: CheckpointRecord) -> None:
    """``record``'s weights into ``module``, strictly: a key missing on either side, or a shape that differs, is
    an error naming the checkpoint (networks of other sizes than the checkpoint's)."""
    state = module.restore_non_persistent(dict(record.state_dict))
    target = module.state_dict()
    bad = [k for k in state if k in target and tuple(state[k].shape) != tuple(target[k].shape)]
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if bad or missing or unexpected:
        detail = (f"shapes differ for {bad[:3]}" if bad else
                  f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        raise CheckpointError(f"{record.path} does not fit the networks built from its config ({detail}); the "
                              f"checkpoint was built with other network sizes: pass the same model.* and size= "
                              f"as its training run")
    module.load_state_dict(state, strict=True)


def build_from_record(record: CheckpointRecord, device: Any = None, training_networks: bool = False,
                      overrides: Mapping[str, Any] | None = None) -> Any:
    """The module of ``record`` with its weights, in eval mode, on ``device``."""
    from lightning_modules.factory import build_module

    if record.inference_only and training_networks:
        raise CheckpointError(f"{record.path} holds inference weights only (an exported bundle): training "
                              f"networks need the training checkpoint")
    cfg = inference_config(record, overrides, training_networks)
    module = build_module(cfg, for_inference=True)
    if record.inference_only:  # a bundle has no discriminators: drop them before the strict load
        module.drop_training_networks()
    load_weights(module, record)
    if not training_networks:
        module.drop_training_networks()
    module.checkpoint_record = record
    module.eval()
    return module.to(device) if device is not None else module


def load(source: str | os.PathLike, device: Any = None, training_networks: bool = False, **overrides: Any) -> Any:
    """A trained condsynth model, ready for inference: a ``.ckpt`` written by ``run.py`` (or
    ``task=import_official``), or a folder written by ``task=export task.format=safetensors`` (hashes checked).

    ``device``: where the module goes (default: the CPU). ``training_networks``: keep the discriminators and loss
    networks (off: they are not built, or dropped after loading). ``overrides``: dotted config keys set last,
    e.g. ``load(path, **{"model.ema.enabled": False})``. Errors are one line naming the file and the fix."""
    source = str(source)
    if os.path.isdir(source):
        from lightning_modules.bundles import read_bundle

        record = read_bundle(source)
    else:
        record = read_record(source)
    return build_from_record(record, device, training_networks, overrides)
