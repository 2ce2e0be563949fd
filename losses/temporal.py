"""Temporal helpers for Everybody Dance Now.

Reference: Chan et al., "Everybody Dance Now", ICCV 2019, §3.2 (temporal smoothing): the temporal
discriminator sees two consecutive frames concatenated along channels. The paper's temporal term is
*adversarial* (via that discriminator); :class:`TemporalConsistencyLoss` is only a simple optional
auxiliary, not part of the paper's objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def temporal_pairs(frames_t: Tensor, frames_t1: Tensor) -> Tensor:
    """Concatenate frames ``t`` and ``t+1`` along channels: [B,C,H,W] x2 -> [B,2C,H,W] (temporal D input)."""
    if frames_t.shape != frames_t1.shape:
        raise ValueError(f"frame shapes differ: {tuple(frames_t.shape)} vs {tuple(frames_t1.shape)}")
    return torch.cat([frames_t, frames_t1], dim=1)


class TemporalConsistencyLoss(nn.Module):
    """``weight * L1mean(fake_t1 - fake_t, real_t1 - real_t)``: frame differences should match the real ones.

    A simple auxiliary term; the temporal smoothing of Everybody Dance Now (§3.2) is adversarial, through
    a temporal discriminator fed with :func:`temporal_pairs`. Real frames are detached.
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def extra_repr(self) -> str:
        return f"weight={self.weight}"

    def forward(self, fake_t: Tensor, fake_t1: Tensor, real_t: Tensor, real_t1: Tensor) -> Tensor:
        """Difference-of-frames consistency between generated and real consecutive frames."""
        real_diff = (real_t1 - real_t).detach()
        return self.weight * F.l1_loss(fake_t1 - fake_t, real_diff)
