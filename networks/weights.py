"""Reading weight files: one place that turns a missing, corrupt or wrong-typed file into a clear error."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


def read_state_dict(path: str | os.PathLike, what: str) -> Mapping[str, Tensor]:
    """Load a state dict from ``path`` onto the CPU (memory-mapped when the file allows it).

    ``what`` names the weights in the error ("VGG19", "LST decoder (r41)") so the message says which file is
    wrong and what it should hold.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, old format without mmap, not a torch file
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001
            raise ValueError(f"could not read {what} weights file {path}: {exc}") from exc
    if not isinstance(state, Mapping):
        raise ValueError(f"{what} weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


def warn_random_weights(message: str) -> None:
    """Say loudly (log and a UserWarning, so tests and notebooks see it too) that pretrained weights were not found
    and a network runs with random weights instead."""
    logger.warning(message)
    warnings.warn(message, UserWarning, stacklevel=3)
