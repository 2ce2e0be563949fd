"""Losses of condsynth: plain ``nn.Module``s / functions (no Lightning, no Hydra)."""

from losses.adversarial import AdversarialLoss
from losses.conditional_gan import ConditionalGANObjective
from losses.feature_matching import FeatureMatchingLoss
from losses.identity import IdentityLoss
from losses.perceptual import DEFAULT_VGG_LAYER_WEIGHTS, VGGPerceptualLoss
from losses.style import ContentLoss, StyleLoss, gram_matrix
from losses.temporal import temporal_pairs

__all__ = [
    "AdversarialLoss",
    "ConditionalGANObjective",
    "ContentLoss",
    "DEFAULT_VGG_LAYER_WEIGHTS",
    "FeatureMatchingLoss",
    "IdentityLoss",
    "StyleLoss",
    "VGGPerceptualLoss",
    "gram_matrix",
    "temporal_pairs",
]
