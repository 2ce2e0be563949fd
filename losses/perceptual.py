"""VGG perceptual loss.

Reference: pix2pixHD (Wang et al., CVPR 2018) §3.2 ("perceptual loss", Eq. 5 footnote) and the official
``VGGLoss`` in ``NVIDIA/pix2pixHD/models/networks.py``: L1 on VGG19 relu1_1 ... relu5_1 with weights
1/32, 1/16, 1/8, 1/4, 1, multiplied by ``lambda_feat = 10`` in ``pix2pixHD_model.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses._frozen import build, check_layers, freeze

DEFAULT_VGG_LAYER_WEIGHTS: dict[str, float] = {
    "relu1_1": 1.0 / 32,
    "relu2_1": 1.0 / 16,
    "relu3_1": 1.0 / 8,
    "relu4_1": 1.0 / 4,
    "relu5_1": 1.0,
}


class VGGPerceptualLoss(nn.Module):
    """``weight * sum_l w_l * L1mean(vgg(fake)[l], vgg(real)[l])`` (pix2pixHD VGGLoss).

    ``vgg`` is any module returning a dict layer name -> Tensor (e.g. ``networks.vgg.VGG19Features``), or a
    factory of one (a Hydra ``_partial_``), built here.
    Its parameters are frozen and it is kept in eval mode; real features are computed under ``no_grad``.
    """

    def __init__(
        self, vgg: nn.Module | Callable[[], nn.Module], layer_weights: Mapping[str, float] | None = None,
        weight: float = 10.0,
    ) -> None:
        super().__init__()
        self.vgg = freeze(build(vgg))
        self.layer_weights = dict(DEFAULT_VGG_LAYER_WEIGHTS if layer_weights is None else layer_weights)
        if not self.layer_weights:
            raise ValueError("layer_weights must not be empty")
        self.weight = float(weight)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        """Switch train/eval mode but keep the frozen extractor in eval mode."""
        super().train(mode)
        self.vgg.eval()
        return self

    def extra_repr(self) -> str:
        return f"layer_weights={self.layer_weights}, weight={self.weight}"

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        """Perceptual distance between ``fake`` (gets gradients) and ``real`` (detached)."""
        fake_feats = self.vgg(fake)
        with torch.no_grad():
            real_feats = self.vgg(real)
        check_layers(fake_feats, self.layer_weights, "VGGPerceptualLoss")
        loss: Tensor | None = None
        for name, w in self.layer_weights.items():
            term = w * F.l1_loss(fake_feats[name], real_feats[name].detach())
            loss = term if loss is None else loss + term
        assert loss is not None
        return self.weight * loss
