"""Cityscapes (gtFine label/instance ids + leftImg8bit photos)."""

from __future__ import annotations

import glob
import os

from datamodules.paired_files import PairedFileDataset, SampleFiles
from datamodules.transforms import PairedTransform

LABEL_SUFFIX = "_gtFine_labelIds.png"
INST_SUFFIX = "_gtFine_instanceIds.png"
IMAGE_SUFFIX = "_leftImg8bit.png"


def cityscapes_layout(root: str, split: str) -> str:
    """Human-readable description of the expected layout (used in error messages)."""
    return (
        f"expected Cityscapes layout {root}/gtFine/{split}/<city>/<name>{LABEL_SUFFIX} (+{INST_SUFFIX}) and "
        f"{root}/leftImg8bit/{split}/<city>/<name>{IMAGE_SUFFIX}"
    )


def has_split(root: str, split: str) -> bool:
    """True when ``{root}/gtFine/{split}`` exists."""
    return os.path.isdir(os.path.join(root, "gtFine", split))


class CityscapesDataset(PairedFileDataset):
    """Cityscapes fine annotations: labelIds (class ids), 16-bit instanceIds, leftImg8bit photos.

    Instance ids ``>= 1000`` are ``class_id * 1000 + k``; smaller ids are class ids of stuff (see
    :func:`datamodules.pix2pixhd.instances.instance_class`). Errors about the tree are raised at construction.
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        label_nc: int = 35,
        use_instance: bool = True,
        transform: PairedTransform | None = None,
        dontcare_id: int | None = None,
        check_files: bool = True,
        max_bad_fraction: float = 0.1,
    ) -> None:
        root = os.fspath(root)
        layout = cityscapes_layout(root, split)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"dataset root {root} does not exist; {layout} — set dataset.root")
        label_dir = os.path.join(root, "gtFine", split)
        img_dir = os.path.join(root, "leftImg8bit", split)
        for folder in (label_dir, img_dir):
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"folder {folder} does not exist; {layout}")
        label_paths = sorted(glob.glob(os.path.join(glob.escape(label_dir), "*", "*" + LABEL_SUFFIX)))
        if not label_paths:
            raise ValueError(f"no *{LABEL_SUFFIX} files under {label_dir}/<city>/; {layout}")
        records = []
        for label_path in label_paths:
            city = os.path.basename(os.path.dirname(label_path))
            name = os.path.basename(label_path)[: -len(LABEL_SUFFIX)]
            image_path = os.path.join(img_dir, city, name + IMAGE_SUFFIX)
            if not os.path.isfile(image_path):
                raise ValueError(
                    f"label map {label_path} has no matching photo {image_path}; add it or remove the label"
                )
            inst_path = None
            if use_instance:
                inst_path = os.path.join(label_dir, city, name + INST_SUFFIX)
                if not os.path.isfile(inst_path):
                    raise ValueError(
                        f"label map {label_path} has no matching instance map {inst_path}; add it, remove "
                        "the label, or set dataset.use_instance=false"
                    )
            records.append(SampleFiles(label_path, inst_path, image_path))
        self.root = root
        self.split = split
        self.use_instance = use_instance
        super().__init__(records, label_nc, transform, dontcare_id, check_files, max_bad_fraction)
