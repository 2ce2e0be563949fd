"""Build a paper's LightningModule from its config: the ``_target_`` allowlist, the bookkeeping keys left out, and
the resolved config a checkpoint stores."""

from __future__ import annotations

from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from lightning_modules.base import SynthesisModule
from lightning_modules.speed import apply_speed_config

#: keys every model config has that are not constructor arguments: read by run names, validation, the datamodule;
#: ``test_metrics`` (optional): a factory ``(cfg, module) -> metrics`` of the model's own task=test metrics
#: ``inference``: the model's overrides for inference (training-only networks left out), read by the loader
MODEL_BOOKKEEPING_KEYS = ("name", "stages", "size_multiple", "test_metrics", "inference")

#: what a model or dataset config may instantiate (fairchem's ``safe_instantiate``): the project's own packages and
#: the torch factories the configs use. Hydra's own blocklist is best-effort; this is an allowlist.
ALLOWED_TARGET_PREFIXES = ("networks.", "losses.", "lightning_modules.", "datamodules.", "tasks.", "torch.optim.",
                           "torch.nn.")
#: Hydra keys that name code besides ``_target_``
_CODE_KEYS = ("_target_",)


class UnsafeConfigError(ValueError):
    """A config names code outside :data:`ALLOWED_TARGET_PREFIXES`."""


def check_targets(node: Any, where: str = "model") -> None:
    """Raise :class:`UnsafeConfigError` naming the key and the target when any ``_target_`` under ``node`` (a
    container or config, nested in dicts and lists) is outside the allowlist."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}"
            if key in _CODE_KEYS:
                target = str(value)
                if not isinstance(value, str) or not target.startswith(ALLOWED_TARGET_PREFIXES) \
                        or not all(part.isidentifier() for part in target.split(".")):
                    raise UnsafeConfigError(
                        f"{path}={target!r} is not allowed: a config may only instantiate "
                        f"{', '.join(p + '*' for p in ALLOWED_TARGET_PREFIXES)}; nothing was built")
            else:
                check_targets(value, path)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_targets(value, f"{where}[{i}]")


def safe_instantiate(node: Any, where: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` after :func:`check_targets`."""
    check_targets(node, where)
    return hydra.utils.instantiate(node, **kwargs)


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
        module = safe_instantiate(module_cfg, "model", _convert_="partial")
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

