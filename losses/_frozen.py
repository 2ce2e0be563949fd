"""Helpers for fixed (non-trained) feature extractors used inside losses."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


def build(module: M | Callable[[], M]) -> M:
    """``module`` itself, or what its factory (a Hydra ``_partial_``) builds. Modules build their pretrained networks
    from factories after their trainable ones, so random initialisation happens in one fixed order."""
    return module if isinstance(module, nn.Module) else module()


def freeze(module: nn.Module) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter of ``module`` and put it in eval mode."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def check_layers(features: Mapping[str, Tensor], layers: Iterable[str], who: str) -> None:
    """Raise ``KeyError`` naming the first of ``layers`` missing from the extractor output ``features``."""
    if not isinstance(features, Mapping):
        raise TypeError(f"{who}: the feature extractor must return a dict name->Tensor, got {type(features)}")
    for name in layers:
        if name not in features:
            raise KeyError(
                f"{who}: layer {name!r} not in the feature extractor output (available: {sorted(features)})"
            )
