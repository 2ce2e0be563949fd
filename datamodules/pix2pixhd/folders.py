"""Datasets in the official pix2pixHD folder layout (``{root}/{phase}_label``, ``_img``, ``_inst``)."""

from __future__ import annotations

import os

from datamodules.paired_files import (
    LABEL_EXTENSIONS,
    PHOTO_EXTENSIONS,
    PairedFileDataset,
    SampleFiles,
    list_stems,
)
from datamodules.transforms import PairedTransform


def folders_layout(root: str, phase: str) -> str:
    """Human-readable description of the expected layout (used in error messages)."""
    return (
        f"expected pix2pixHD layout {root}/{phase}_label/*.png, {root}/{phase}_img/*.(jpg|png) and "
        f"{root}/{phase}_inst/*.png (instance maps only needed with use_instance=true)"
    )


def has_phase(root: str, phase: str) -> bool:
    """True when ``{root}/{phase}_label`` exists."""
    return os.path.isdir(os.path.join(root, f"{phase}_label"))


class Pix2PixHDFolderDataset(PairedFileDataset):
    """Label maps, instance maps and photos matched by file stem in pix2pixHD's folder layout.

    ``require_images=False`` (prediction) ignores photos: samples then have no ``image`` key.
    Missing folders, unmatched labels and unreadable files raise at construction.
    """

    def __init__(
        self,
        root: str,
        phase: str = "train",
        label_nc: int = 35,
        use_instance: bool = True,
        transform: PairedTransform | None = None,
        dontcare_id: int | None = None,
        require_images: bool = True,
        check_files: bool = True,
        max_bad_fraction: float = 0.1,
    ) -> None:
        root = os.fspath(root)
        layout = folders_layout(root, phase)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"dataset root {root} does not exist; {layout} — set dataset.root")
        label_dir = os.path.join(root, f"{phase}_label")
        img_dir = os.path.join(root, f"{phase}_img")
        inst_dir = os.path.join(root, f"{phase}_inst")
        needed = [(label_dir, "")]
        if require_images:
            needed.append((img_dir, ""))
        if use_instance:
            needed.append((inst_dir, " or set dataset.use_instance=false"))
        for folder, alt in needed:
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"folder {folder} does not exist; {layout}{alt}")

        labels = list_stems(label_dir, LABEL_EXTENSIONS)
        if not labels:
            raise ValueError(f"label folder {label_dir} contains no .png label maps; {layout}")
        images = list_stems(img_dir, PHOTO_EXTENSIONS) if require_images else {}
        insts = list_stems(inst_dir, LABEL_EXTENSIONS) if use_instance else {}

        records = []
        for stem, label_path in labels.items():
            if require_images and stem not in images:
                raise ValueError(
                    f"label map {label_path} has no matching photo {img_dir}/{stem}.(jpg|png); "
                    "add the photo or remove the label"
                )
            if use_instance and stem not in insts:
                raise ValueError(
                    f"label map {label_path} has no matching instance map {inst_dir}/{stem}.png; "
                    "add it, remove the label, or set dataset.use_instance=false"
                )
            records.append(SampleFiles(label_path, insts.get(stem), images.get(stem)))
        self.root = root
        self.phase = phase
        self.use_instance = use_instance
        super().__init__(records, label_nc, transform, dontcare_id, check_files, max_bad_fraction)
