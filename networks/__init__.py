"""Network architectures (plain ``nn.Module``s, no Lightning/Hydra)."""

from networks.blocks import ResnetBlock, get_norm_layer, padding_layers
from networks.discriminators import MultiscaleDiscriminator, NLayerDiscriminator
from networks.label_encoding import instance_boundary_map, one_hot_labels
from networks.lst import CovarianceMatrixNet, LinearStylizer, LinearTransform, VGGDecoder, VGGEncoder
from networks.pix2pixhd import (
    FeatureEncoder,
    GlobalGenerator,
    LocalEnhancer,
    instance_average_pool,
    instance_mean_features,
)
from networks.vgg import VGG19_LAYERS, VGG19Features

__all__ = [
    "VGG19_LAYERS",
    "FeatureEncoder",
    "GlobalGenerator",
    "LocalEnhancer",
    "MultiscaleDiscriminator",
    "NLayerDiscriminator",
    "ResnetBlock",
    "VGG19Features",
    "CovarianceMatrixNet",
    "LinearStylizer",
    "LinearTransform",
    "VGGDecoder",
    "VGGEncoder",
    "get_norm_layer",
    "instance_average_pool",
    "instance_boundary_map",
    "instance_mean_features",
    "one_hot_labels",
    "padding_layers",
]
