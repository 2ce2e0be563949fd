"""Losses of condsynth: plain ``nn.Module``s / functions (no Lightning, no Hydra), shared by the papers.

``adversarial`` (LSGAN/hinge/BCE), ``feature_matching`` and ``perceptual`` (VGG), combined by ``conditional_gan``:
pix2pixHD (docs/papers/pix2pixhd.md) and Everybody Dance Now (docs/papers/edn.md; ``temporal`` stacks frame pairs
the way a temporal discriminator reads them); ``style`` (content, Gram/style): Linear Style Transfer
(docs/papers/lst.md); ``identity``: X2Face's identity stage, on the ``face_id`` network's features
(docs/papers/x2face.md).
"""

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
