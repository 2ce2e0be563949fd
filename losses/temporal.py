"""Temporal helpers for Everybody Dance Now.

Reference: Chan et al., "Everybody Dance Now", ICCV 2019, §3.2 (temporal smoothing): the temporal
discriminator sees two consecutive frames concatenated along channels. The paper's temporal term is
*adversarial* (via that discriminator).
"""

from __future__ import annotations

import torch
from torch import Tensor


def temporal_pairs(frames_t: Tensor, frames_t1: Tensor) -> Tensor:
    """Concatenate frames ``t`` and ``t+1`` along channels: [B,C,H,W] x2 -> [B,2C,H,W] (temporal D input)."""
    if frames_t.shape != frames_t1.shape:
        raise ValueError(f"frame shapes differ: {tuple(frames_t.shape)} vs {tuple(frames_t1.shape)}")
    return torch.cat([frames_t, frames_t1], dim=1)
