"""Inference dataset: a folder of label maps (and optionally instance maps), no photos."""

from __future__ import annotations

import os

from datamodules.paired_files import LABEL_EXTENSIONS, PairedFileDataset, SampleFiles, list_stems
from datamodules.transforms import PairedTransform


class LabelFolderDataset(PairedFileDataset):
    """``{label_dir}/*.png`` label maps, instance maps matched by stem in ``inst_dir`` (optional).

    Samples: ``label``, ``inst`` (the label when ``inst_dir`` is None), ``path``; no ``image``.
    """

    #: inference: the trained model's classes are fixed, so the label maps must use them
    label_fix = ("the trained model has label_nc={label_nc} classes and cannot learn more: map the label maps' ids "
                 "to the training data's classes (0..{label_nc}-1), or set dataset.dontcare_id=<a class id> to map "
                 "the unknown ids to that class")

    def __init__(
        self,
        label_dir: str,
        label_nc: int,
        inst_dir: str | None = None,
        transform: PairedTransform | None = None,
        dontcare_id: int | None = None,
        check_files: bool = True,
        max_bad_fraction: float = 0.1,
    ) -> None:
        label_dir = os.fspath(label_dir)
        if not os.path.isdir(label_dir):
            raise FileNotFoundError(
                f"label folder {label_dir} does not exist; set dataset.predict_label_dir=<folder of label maps>"
            )
        labels = list_stems(label_dir, LABEL_EXTENSIONS)
        if not labels:
            raise ValueError(f"label folder {label_dir} contains no .png label maps; add single-channel id PNGs")
        insts: dict[str, str] = {}
        if inst_dir is not None:
            inst_dir = os.fspath(inst_dir)
            if not os.path.isdir(inst_dir):
                raise FileNotFoundError(
                    f"instance folder {inst_dir} does not exist; set dataset.predict_inst_dir to a folder of "
                    "instance maps named like the labels, or to null"
                )
            insts = list_stems(inst_dir, LABEL_EXTENSIONS)
        records = []
        for stem, label_path in labels.items():
            if inst_dir is not None and stem not in insts:
                raise ValueError(
                    f"label map {label_path} has no matching instance map {inst_dir}/{stem}.png; "
                    "add it or remove the label"
                )
            records.append(SampleFiles(label_path, insts.get(stem), None))
        self.label_dir = label_dir
        self.inst_dir = inst_dir
        super().__init__(records, label_nc, transform, dontcare_id, check_files, max_bad_fraction)
