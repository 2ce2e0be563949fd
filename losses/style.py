"""Style and content losses of Linear Style Transfer.

Reference: Li et al., "Learning Linear Transformations for Fast Image and Video Style Transfer",
CVPR 2019, §3 (training objective), and the official criterion ``libs/Criterion.py`` of
``sunshineatnoon/LinearStyleTransfer`` (style: squared differences of channel means + Gram matrices
summed and divided by the batch size, on relu1_1..relu4_1, weight 0.02; content: MSE on relu4_1, weight 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from losses._frozen import check_layers


def gram_matrix(features: Tensor) -> Tensor:
    """Normalised Gram matrix ``F F^T / (C*H*W)`` of ``features`` [B,C,H,W] -> [B,C,C] (official GramMatrix)."""
    if features.dim() != 4:
        raise ValueError(f"gram_matrix expects a [B,C,H,W] tensor, got shape {tuple(features.shape)}")
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return f.bmm(f.transpose(1, 2)) / (c * h * w)


def _style_term(output: Tensor, target: Tensor) -> Tensor:
    """Sum of squared differences of channel means and of Gram matrices, divided by the batch size.

    Spatial sizes may differ (means and Gram matrices do not depend on H, W).
    """
    if output.dim() != 4 or output.shape[:2] != target.shape[:2]:
        raise ValueError(
            f"style features must be [B,C,H,W] with equal B and C, got {tuple(output.shape)} vs {tuple(target.shape)}"
        )
    mean_term = F.mse_loss(output.mean(dim=(2, 3)), target.mean(dim=(2, 3)), reduction="sum")
    gram_term = F.mse_loss(gram_matrix(output), gram_matrix(target), reduction="sum")
    return (mean_term + gram_term) / output.shape[0]


class StyleLoss(nn.Module):
    """``weight * sum_l [||mu(O_l) - mu(S_l)||^2 + ||G(O_l) - G(S_l)||^2] / B`` (style targets detached)."""

    def __init__(
        self, layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1"), weight: float = 0.02
    ) -> None:
        super().__init__()
        self.layers = tuple(layers)
        if not self.layers:
            raise ValueError("layers must not be empty")
        self.weight = float(weight)

    def extra_repr(self) -> str:
        return f"layers={self.layers}, weight={self.weight}"

    def forward(self, output_feats: Mapping[str, Tensor], style_feats: Mapping[str, Tensor]) -> Tensor:
        """Style loss between the features of the stylised output and of the style image."""
        check_layers(output_feats, self.layers, "StyleLoss (output)")
        check_layers(style_feats, self.layers, "StyleLoss (style)")
        loss: Tensor | None = None
        for name in self.layers:
            term = _style_term(output_feats[name], style_feats[name].detach())
            loss = term if loss is None else loss + term
        assert loss is not None
        return self.weight * loss


class ContentLoss(nn.Module):
    """``weight * MSE(O_l, C_l)`` (mean reduction) at one layer, content target detached."""

    def __init__(self, layer: str = "relu4_1", weight: float = 1.0) -> None:
        super().__init__()
        self.layer = layer
        self.weight = float(weight)

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, weight={self.weight}"

    def forward(self, output_feats: Mapping[str, Tensor], content_feats: Mapping[str, Tensor]) -> Tensor:
        """Content loss between the features of the stylised output and of the content image."""
        check_layers(output_feats, [self.layer], "ContentLoss (output)")
        check_layers(content_feats, [self.layer], "ContentLoss (content)")
        return self.weight * F.mse_loss(output_feats[self.layer], content_feats[self.layer].detach())
