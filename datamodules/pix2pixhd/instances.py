"""Instance-id conventions shared by Cityscapes and the synthetic scenes.

Cityscapes ``*_instanceIds.png`` maps store, per pixel, either the class id (``< 1000``, "stuff" pixels and
objects without instance annotation) or ``class_id * 1000 + k`` for the k-th instance of an object class.
"""

from __future__ import annotations

import numpy as np
import torch

INSTANCE_ID_MULTIPLIER = 1000
"""Instance ids ``>= INSTANCE_ID_MULTIPLIER`` encode ``class_id * INSTANCE_ID_MULTIPLIER + k``."""


def instance_class(inst_ids: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Return the class id of every instance id (``id // 1000`` if ``id >= 1000`` else ``id``).

    Works element-wise on tensors (result: same dtype/shape/device) and on numpy arrays.
    """
    if isinstance(inst_ids, torch.Tensor):
        return torch.where(
            inst_ids >= INSTANCE_ID_MULTIPLIER,
            torch.div(inst_ids, INSTANCE_ID_MULTIPLIER, rounding_mode="floor"),
            inst_ids,
        )
    arr = np.asarray(inst_ids)
    return np.where(arr >= INSTANCE_ID_MULTIPLIER, arr // INSTANCE_ID_MULTIPLIER, arr)


def make_instance_id(class_id: int, k: int) -> int:
    """Cityscapes-style id of the k-th instance (k >= 0) of object class ``class_id`` (>= 1)."""
    if class_id < 1 or not 0 <= k < INSTANCE_ID_MULTIPLIER:
        raise ValueError(
            f"cannot encode instance k={k} of class {class_id}: need class_id >= 1 and "
            f"0 <= k < {INSTANCE_ID_MULTIPLIER}"
        )
    return class_id * INSTANCE_ID_MULTIPLIER + k
