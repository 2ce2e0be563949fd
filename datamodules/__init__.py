"""Datasets and LightningDataModules: pix2pixHD-style conditional synthesis, and LST (content, style) pairs
(``StylePairDataModule``, see ``datamodules.style_transfer``).

Sample contract: ``{"label": LongTensor[1,H,W], "inst": LongTensor[1,H,W], "image": FloatTensor[3,H,W] in
[-1,1], "path": str}`` (prediction samples have no ``image``); ``inst`` equals ``label`` without instance maps.
"""

from .base import PairedFileDataset, SampleFiles
from .cityscapes import CityscapesDataset
from .instances import INSTANCE_ID_MULTIPLIER, instance_class, make_instance_id
from .label_folder import LabelFolderDataset
from .pix2pixhd_datamodule import DATASETS, Pix2PixHDDataModule
from .pix2pixhd_folders import Pix2PixHDFolderDataset
from .style_transfer import EpochPairSampler, StylePairDataModule, StylePairDataset, list_images
from .synthetic_scenes import CLASS_NAMES, SyntheticScenesDataset, class_names
from .synthetic_styles import STYLE_KINDS, SyntheticImages
from .transforms import (
    RESIZE_MODES,
    PairedTransform,
    check_label_ids,
    fit_to_stride,
    read_image,
    read_label_map,
    training_size,
)

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "INSTANCE_ID_MULTIPLIER",
    "RESIZE_MODES",
    "CityscapesDataset",
    "LabelFolderDataset",
    "PairedFileDataset",
    "PairedTransform",
    "Pix2PixHDDataModule",
    "Pix2PixHDFolderDataset",
    "SampleFiles",
    "STYLE_KINDS",
    "EpochPairSampler",
    "StylePairDataModule",
    "StylePairDataset",
    "SyntheticImages",
    "list_images",
    "SyntheticScenesDataset",
    "check_label_ids",
    "class_names",
    "fit_to_stride",
    "instance_class",
    "make_instance_id",
    "read_image",
    "read_label_map",
    "training_size",
]
