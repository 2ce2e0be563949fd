"""Identity / generic feature-distance loss.

Reference: X2Face (Wiles et al., ECCV 2018) §3.3, second training stage: the generated face and the
driving/target face are compared in the feature space of a fixed, pre-trained network (VGG-Face /
VGG19) to preserve identity. Implemented here generically for any dict-returning feature extractor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses._frozen import check_layers, freeze

_DISTANCES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"l1": F.l1_loss, "l2": F.mse_loss}


class IdentityLoss(nn.Module):
    """``weight * sum_l w_l * distance(net(x)[l], net(y)[l].detach())`` with a frozen ``network``.

    ``distance`` is ``'l1'`` (mean absolute error) or ``'l2'`` (mean squared error). The network's
    parameters get ``requires_grad=False`` and the network stays in eval mode (e.g. frozen BatchNorm
    statistics); gradients still flow through it to ``x``.
    """

    def __init__(
        self,
        network: nn.Module,
        layers: Sequence[str],
        layer_weights: Sequence[float] | None = None,
        weight: float = 1.0,
        distance: str = "l1",
    ) -> None:
        super().__init__()
        if isinstance(layers, str):
            layers = [layers]
        self.layers = tuple(layers)
        if not self.layers:
            raise ValueError("layers must not be empty")
        if layer_weights is None:
            layer_weights = [1.0] * len(self.layers)
        if len(layer_weights) != len(self.layers):
            raise ValueError(
                f"layer_weights has {len(layer_weights)} entries but there are {len(self.layers)} layers"
            )
        if distance not in _DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; valid: {', '.join(_DISTANCES)}")
        self.network = freeze(network)
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.weight = float(weight)
        self.distance = distance

    def train(self, mode: bool = True) -> IdentityLoss:
        """Switch train/eval mode but keep the frozen network in eval mode."""
        super().train(mode)
        self.network.eval()
        return self

    def extra_repr(self) -> str:
        return (
            f"layers={self.layers}, layer_weights={self.layer_weights}, weight={self.weight}, "
            f"distance={self.distance!r}"
        )

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Feature distance between ``x`` (e.g. generated, gets gradients) and the target ``y`` (detached)."""
        fx = self.network(x)
        with torch.no_grad():
            fy = self.network(y)
        check_layers(fx, self.layers, "IdentityLoss")
        dist = _DISTANCES[self.distance]
        loss: Tensor | None = None
        for name, w in zip(self.layers, self.layer_weights, strict=True):
            term = w * dist(fx[name], fy[name].detach())
            loss = term if loss is None else loss + term
        assert loss is not None
        return self.weight * loss
