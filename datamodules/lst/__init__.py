"""Linear Style Transfer's data: (content, style) pairs from synthetic scenes and textures (default) or two image
folders (MS-COCO + WikiArt in the paper).

Docs: docs/papers/lst.md (commands, datasets, official weights, measured figures)."""

from datamodules.lst.datamodule import EpochPairSampler, StylePairDataModule, StylePairDataset, list_images
from datamodules.lst.synthetic import STYLE_KINDS, SyntheticImages

__all__ = ["STYLE_KINDS", "EpochPairSampler", "StylePairDataModule", "StylePairDataset", "SyntheticImages",
           "list_images"]
