"""Discriminator feature-matching loss.

Reference: pix2pixHD (Wang et al., CVPR 2018) §3.2, Eq. (4), with the weights of the official
implementation (``pix2pixHD_model.py``): each L1 term is scaled by ``4 / (n_layers_D + 1)``,
``1 / num_D`` and ``lambda_feat`` (default 10).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class FeatureMatchingLoss(nn.Module):
    """L1 distance between D's intermediate features on fake and real images (Eq. 4).

    ``fake_features[i]`` / ``real_features[i]`` are the lists returned by scale ``i`` of a multi-scale
    discriminator with intermediate features; the last tensor of each list (the prediction) is skipped.
    Real features are detached.
    """

    def __init__(self, num_D: int = 3, n_layers: int = 3, lambda_feat: float = 10.0) -> None:
        super().__init__()
        if num_D < 1 or n_layers < 1:
            raise ValueError(f"num_D and n_layers must be >= 1, got num_D={num_D}, n_layers={n_layers}")
        self.num_D = num_D
        self.n_layers = n_layers
        self.lambda_feat = float(lambda_feat)

    @property
    def term_weight(self) -> float:
        """Weight of every per-layer L1 term: ``4 / (n_layers + 1) / num_D * lambda_feat``."""
        return 4.0 / (self.n_layers + 1) * (1.0 / self.num_D) * self.lambda_feat

    def extra_repr(self) -> str:
        return f"num_D={self.num_D}, n_layers={self.n_layers}, lambda_feat={self.lambda_feat}"

    def forward(
        self, fake_features: Sequence[Sequence[Tensor]], real_features: Sequence[Sequence[Tensor]]
    ) -> Tensor:
        """Weighted sum over scales and intermediate layers of ``L1mean(fake, real.detach())``."""
        if len(fake_features) != len(real_features):
            raise ValueError(
                f"fake/real feature lists differ in number of scales: {len(fake_features)} vs {len(real_features)}"
            )
        if len(fake_features) != self.num_D:
            raise ValueError(f"expected {self.num_D} discriminator scales (num_D), got {len(fake_features)}")
        # official pix2pixHD pix2pixHD_model.py weights each term, in this order: D_weights * feat_weights * L1 *
        # lambda_feat (one multiplication after the sum differs in the last float bits, up to 4e-4 in the weights
        # after one Adam step)
        scale_weight = (1.0 / self.num_D) * (4.0 / (self.n_layers + 1))
        loss: Tensor | None = None
        for i, (fake_i, real_i) in enumerate(zip(fake_features, real_features, strict=True)):
            if isinstance(fake_i, Tensor) or isinstance(real_i, Tensor):
                raise TypeError("features must be a list (scales) of lists (layers) of Tensors")
            if len(fake_i) != len(real_i):
                raise ValueError(
                    f"scale {i}: fake/real have different numbers of layers: {len(fake_i)} vs {len(real_i)}"
                )
            for fake_ij, real_ij in zip(fake_i[:-1], real_i[:-1], strict=True):
                term = scale_weight * F.l1_loss(fake_ij, real_ij.detach()) * self.lambda_feat
                loss = term if loss is None else loss + term
        if loss is None:
            raise ValueError("no intermediate features to match (each scale needs at least 2 tensors)")
        return loss
