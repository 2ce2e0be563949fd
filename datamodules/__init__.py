"""Datasets and the LightningDataModule for pix2pixHD-style conditional synthesis.

Sample contract: ``{"label": LongTensor[1,H,W], "inst": LongTensor[1,H,W], "image": FloatTensor[3,H,W] in
[-1,1], "path": str}`` (prediction samples have no ``image``); ``inst`` equals ``label`` without instance maps.
"""

from .base import PairedFileDataset, SampleFiles
from .cityscapes import CityscapesDataset
from .instances import INSTANCE_ID_MULTIPLIER, instance_class, make_instance_id
from .label_folder import LabelFolderDataset
from .pix2pixhd_datamodule import DATASETS, Pix2PixHDDataModule
from .pix2pixhd_folders import Pix2PixHDFolderDataset
from .synthetic_scenes import CLASS_NAMES, SyntheticScenesDataset, class_names
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
