"""The conditional-GAN objective of pix2pixHD (Wang et al., CVPR 2018, §3.2, Eq. 4), for any discriminator.

    min_G ( max_D sum_k L_GAN(G, D_k) + lambda_FM sum_k L_FM(G, D_k) ) + lambda_VGG L_VGG(G(s), x)

with the LSGAN adversarial loss (hinge and BCE also selectable), discriminator feature matching and the VGG
perceptual loss; feature matching and the perceptual loss can each be switched off (``None``) for the paper's
ablations. Every term comes back by name, already weighted, so the caller sums and logs them. ``perceptual``
may be a factory (Hydra ``_partial_``): the VGG is then built here, after the caller's own networks.

The discriminator is called on ``cat([condition, image], dim=1)``: the condition is whatever the paper
conditions on (pix2pixHD: the label map and instance boundaries; Everybody Dance Now: poses, previous frames).
One objective per discriminator: a paper with several (frame, temporal, face) builds several, with
``suffix`` naming their terms apart (``G_GAN_face``).

Two ways to get the terms: :meth:`discriminator_terms` and :meth:`generator_terms` apart (the caller may step D
in between), or :meth:`terms`, the official pix2pixHD ``Pix2PixHDModel.forward``: every term from the same D,
with a single D pass on the real image whose output serves both D's loss and feature matching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from losses._frozen import build
from losses.adversarial import AdversarialLoss
from losses.feature_matching import FeatureMatchingLoss

Discriminator = Callable[[Tensor], Any]


class ConditionalGANObjective(nn.Module):
    """Discriminator and generator terms of the conditional-GAN objective (pix2pixHD Eq. 4 + §3.2 VGG)."""

    def __init__(
        self,
        adversarial: AdversarialLoss,
        feature_matching: FeatureMatchingLoss | None = None,
        perceptual: nn.Module | Callable[[], nn.Module] | None = None,
        suffix: str = "",
    ) -> None:
        super().__init__()
        self.adversarial = adversarial
        self.feature_matching = feature_matching
        self.perceptual = build(perceptual) if perceptual is not None else None
        self.suffix = f"_{suffix}" if suffix else ""

    def frozen_networks(self) -> list[nn.Module]:
        """Pretrained networks inside the objective (the perceptual loss's VGG): never trained, never saved."""
        vgg = getattr(self.perceptual, "vgg", None)
        return [vgg] if isinstance(vgg, nn.Module) else []

    @staticmethod
    def discriminate(discriminator: Discriminator, condition: Tensor, image: Tensor) -> Any:
        return discriminator(torch.cat([condition, image], dim=1))

    def discriminator_terms(self, discriminator: Discriminator, condition: Tensor, real: Tensor,
                            fake: Tensor) -> dict[str, Tensor]:
        """``D_fake`` and ``D_real``, each half of the adversarial loss (official pix2pixHD: ``(D_fake + D_real)
        * 0.5``); the fake is detached so only D learns from them."""
        pred_fake = self.discriminate(discriminator, condition, fake.detach())
        pred_real = self.discriminate(discriminator, condition, real)
        s = self.suffix
        return {
            f"D_fake{s}": 0.5 * self.adversarial(pred_fake, False, for_discriminator=True),
            f"D_real{s}": 0.5 * self.adversarial(pred_real, True, for_discriminator=True),
        }

    def generator_terms(self, discriminator: Discriminator, condition: Tensor, real: Tensor,
                        fake: Tensor) -> dict[str, Tensor]:
        """``G_GAN``, then ``G_GAN_Feat`` (D feature matching, real features without gradients) and ``G_VGG``
        when those losses are on."""
        pred_fake = self.discriminate(discriminator, condition, fake)
        s = self.suffix
        terms = {f"G_GAN{s}": self.adversarial(pred_fake, True, for_discriminator=False)}
        if self.feature_matching is not None:
            with torch.no_grad():
                pred_real = self.discriminate(discriminator, condition, real)
            terms[f"G_GAN_Feat{s}"] = self.feature_matching(pred_fake, pred_real)
        if self.perceptual is not None:
            terms[f"G_VGG{s}"] = self.perceptual(fake, real)
        return terms

    def terms(self, discriminator: Discriminator, condition: Tensor, real: Tensor,
              fake: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(D's terms, G's terms) from one state of D, as official pix2pixHD's ``forward`` computes them: D on the
        detached fake, D on the real image (one pass: its prediction is ``D_real`` and its features, detached, are
        feature matching's target), D on the fake for ``G_GAN`` and feature matching, then VGG.

        D's parameters collect no gradient from the generator's pass (only ``fake`` does), so a backward of G's
        total leaves nothing in D's gradients (official code zeroes them before D's backward; same update)."""
        s = self.suffix
        pred_fake_detached = self.discriminate(discriminator, condition, fake.detach())
        pred_real = self.discriminate(discriminator, condition, real)
        d_terms = {
            f"D_fake{s}": 0.5 * self.adversarial(pred_fake_detached, False, for_discriminator=True),
            f"D_real{s}": 0.5 * self.adversarial(pred_real, True, for_discriminator=True),
        }
        with parameters_frozen(discriminator):
            pred_fake = self.discriminate(discriminator, condition, fake)
        g_terms = {f"G_GAN{s}": self.adversarial(pred_fake, True, for_discriminator=False)}
        if self.feature_matching is not None:
            g_terms[f"G_GAN_Feat{s}"] = self.feature_matching(pred_fake, _detached(pred_real))
        if self.perceptual is not None:
            g_terms[f"G_VGG{s}"] = self.perceptual(fake, real)
        return d_terms, g_terms


def _detached(predictions: Any) -> Any:
    """``predictions`` (a tensor or nested lists of tensors) with every tensor detached."""
    if isinstance(predictions, Tensor):
        return predictions.detach()
    return [_detached(p) for p in predictions]


@contextmanager
def parameters_frozen(module: Any) -> Iterator[None]:
    """Within the block, ``module``'s trainable parameters do not require grad (graphs built there route gradients to
    their inputs only); afterwards the flags are as before. A non-Module callable is left alone."""
    params = [p for p in module.parameters() if p.requires_grad] if isinstance(module, nn.Module) else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
