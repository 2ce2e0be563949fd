"""Conditioning inputs of pix2pixHD: one-hot semantic labels and instance boundary maps (Wang et al. 2018)."""

from __future__ import annotations

import torch

_MAX_REPORTED_IDS = 10


def as_long_ids(x: torch.Tensor, name: str) -> torch.Tensor:
    """Validate a [B, 1, H, W] id map (integer dtype, or float holding whole numbers) and return it as int64."""
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must have shape [B, 1, H, W], got {tuple(x.shape)}.")
    if x.is_floating_point():
        if not torch.equal(x, torch.round(x)):
            raise ValueError(f"{name} must hold integer ids; got a float tensor with non-integer values.")
    elif x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"{name} must be an integer tensor, got dtype {x.dtype}.")
    return x.long()


def one_hot_labels(label: torch.Tensor, label_nc: int) -> torch.Tensor:
    """One-hot encode a label map [B, 1, H, W] of integer ids into float [B, label_nc, H, W] (pix2pixHD §3).

    Raises ValueError naming the offending ids if any id is < 0 or >= ``label_nc``.
    """
    ids = as_long_ids(label, "label")
    bad = (ids < 0) | (ids >= label_nc)
    if bool(bad.any()):
        offending = torch.unique(ids[bad]).tolist()
        shown = ", ".join(str(v) for v in offending[:_MAX_REPORTED_IDS])
        more = (
            f" (and {len(offending) - _MAX_REPORTED_IDS} more)" if len(offending) > _MAX_REPORTED_IDS else ""
        )
        raise ValueError(
            f"Label map contains id(s) {shown}{more} outside [0, label_nc) with label_nc={label_nc}. "
            f"Fix: set dataset.label_nc > max id or map it with dataset.dontcare_id."
        )
    b, _, h, w = ids.shape
    out = torch.zeros(b, label_nc, h, w, device=label.device, dtype=torch.float32)
    return out.scatter_(1, ids, 1.0)


def instance_boundary_map(inst: torch.Tensor) -> torch.Tensor:
    """Binary instance boundary map (pix2pixHD §3.3): 1 where a 4-neighbour has a different instance id.

    ``inst`` [B, 1, H, W] integer ids -> float [B, 1, H, W] in {0, 1}. Neighbours outside the image are
    ignored.
    """
    ids = as_long_ids(inst, "inst")
    edge = torch.zeros_like(ids, dtype=torch.bool)
    horizontal = ids[..., :, 1:] != ids[..., :, :-1]
    vertical = ids[..., 1:, :] != ids[..., :-1, :]
    edge[..., :, 1:] |= horizontal
    edge[..., :, :-1] |= horizontal
    edge[..., 1:, :] |= vertical
    edge[..., :-1, :] |= vertical
    return edge.float()
