"""Adversarial (GAN) objectives.

Reference: pix2pixHD (Wang et al., CVPR 2018) §3.2, Eq. (2)-(5), and the official ``GANLoss`` in
``NVIDIA/pix2pixHD/models/networks.py`` (LSGAN by default, losses summed over discriminator scales).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: A single prediction, one per scale, or one list of (intermediate features..., prediction) per scale.
Predictions = Tensor | Sequence[Tensor] | Sequence[Sequence[Tensor]]

VALID_MODES = ("lsgan", "bce", "hinge")


def _final_predictions(predictions: Predictions) -> list[Tensor]:
    """Flatten ``predictions`` into one final-prediction tensor per scale.

    For a list of lists (multi-scale D with ``getIntermFeat``) the last tensor of each inner list is the
    prediction, as in official pix2pixHD ``GANLoss.__call__``.
    """
    if isinstance(predictions, Tensor):
        return [predictions]
    if not isinstance(predictions, (list, tuple)) or len(predictions) == 0:
        raise TypeError(
            "predictions must be a Tensor, a non-empty list of Tensors or a list of lists of Tensors"
        )
    out: list[Tensor] = []
    for scale in predictions:
        if isinstance(scale, Tensor):
            out.append(scale)
        elif isinstance(scale, (list, tuple)) and len(scale) > 0 and isinstance(scale[-1], Tensor):
            out.append(scale[-1])
        else:
            raise TypeError(f"each scale must be a Tensor or a non-empty list of Tensors, got {type(scale)}")
    return out


class AdversarialLoss(nn.Module):
    """GAN loss for (multi-scale) discriminators, summed over scales.

    Modes:
        * ``'lsgan'`` (pix2pixHD default, Mao et al. 2017): ``mean((x - target)^2)``.
        * ``'bce'``: binary cross-entropy on *logits* against ``target``.
        * ``'hinge'``: D real ``mean(relu(1 - x))``, D fake ``mean(relu(1 + x))``, G ``-mean(x)``.

    For lsgan/bce the generator uses the same formula with ``target_is_real=True``.
    """

    def __init__(self, mode: str = "lsgan", target_real: float = 1.0, target_fake: float = 0.0) -> None:
        super().__init__()
        if mode not in VALID_MODES:
            raise ValueError(f"unknown adversarial loss mode {mode!r}; valid modes: {', '.join(VALID_MODES)}")
        self.mode = mode
        self.target_real = float(target_real)
        self.target_fake = float(target_fake)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, target_real={self.target_real}, target_fake={self.target_fake}"

    def _single(self, x: Tensor, target_is_real: bool, for_discriminator: bool) -> Tensor:
        if self.mode == "hinge":
            if not for_discriminator:
                return -x.mean()
            if target_is_real:
                return F.relu(1.0 - x).mean()
            return F.relu(1.0 + x).mean()
        target = torch.full_like(x, self.target_real if target_is_real else self.target_fake)
        if self.mode == "lsgan":
            return F.mse_loss(x, target)
        return F.binary_cross_entropy_with_logits(x, target)

    def forward(
        self, predictions: Predictions, target_is_real: bool, for_discriminator: bool = True
    ) -> Tensor:
        """Sum of the per-scale losses of the final predictions.

        Args:
            predictions: Tensor, list of Tensors (one per scale) or list of lists of Tensors (last one of
                each inner list is the prediction).
            target_is_real: whether the predictions should be classified as real.
            for_discriminator: only matters for ``'hinge'``; ``False`` gives the generator loss ``-mean(x)``
                and then requires ``target_is_real=True``.
        """
        if self.mode == "hinge" and not for_discriminator and not target_is_real:
            raise ValueError("hinge generator loss (for_discriminator=False) requires target_is_real=True")
        preds = _final_predictions(predictions)
        loss = self._single(preds[0], target_is_real, for_discriminator)
        for x in preds[1:]:
            loss = loss + self._single(x, target_is_real, for_discriminator)
        return loss
