"""pix2pixHD's data: synthetic scenes (default), the official folder layout, Cityscapes, label-only folders.
Docs: docs/papers/pix2pixhd.md (commands, datasets, official weights, measured figures).

Sample contract: ``{"label": LongTensor[1,H,W], "inst": LongTensor[1,H,W], "image": FloatTensor[3,H,W] in
[-1,1], "path": str}`` (prediction samples have no ``image``); ``inst`` equals ``label`` without instance maps.
"""

from datamodules.pix2pixhd.cityscapes import CityscapesDataset
from datamodules.pix2pixhd.datamodule import DATASETS, Pix2PixHDDataModule
from datamodules.pix2pixhd.folders import Pix2PixHDFolderDataset
from datamodules.pix2pixhd.instances import INSTANCE_ID_MULTIPLIER, instance_class, make_instance_id
from datamodules.pix2pixhd.label_folder import LabelFolderDataset
from datamodules.pix2pixhd.synthetic import CLASS_NAMES, SyntheticScenesDataset, class_names

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "INSTANCE_ID_MULTIPLIER",
    "CityscapesDataset",
    "LabelFolderDataset",
    "Pix2PixHDDataModule",
    "Pix2PixHDFolderDataset",
    "SyntheticScenesDataset",
    "class_names",
    "instance_class",
    "make_instance_id",
]
