"""File-backed (label map, instance map, photo) triplets matched by file stem: the shared reading, checking and
transform code of paired label-to-image datasets (pix2pixHD's folders and Cityscapes)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from datamodules.base import scan_files
from datamodules.transforms import (
    TRAINING_LABEL_FIX,
    PairedTransform,
    check_dontcare,
    check_label_ids,
    image_to_tensor,
    label_to_tensor,
    read_image,
    read_label_map,
)

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
"""File extensions accepted for photos (label and instance maps must be lossless ``.png``)."""
LABEL_EXTENSIONS = (".png",)


@dataclass(frozen=True)
class SampleFiles:
    """Files of one sample: label map, optional instance map, optional photo."""

    label: str
    inst: str | None = None
    image: str | None = None


def list_stems(folder: str, extensions: tuple[str, ...]) -> dict[str, str]:
    """Map file stem -> path for files in ``folder`` with one of ``extensions`` (case-insensitive).

    Two files sharing a stem (e.g. ``a.jpg`` and ``a.png``) are ambiguous and raise a ValueError.
    """
    out: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        path = os.path.join(folder, name)
        if ext.lower() not in extensions or not os.path.isfile(path):
            continue
        if stem in out:
            raise ValueError(
                f"ambiguous files {out[stem]} and {path} share the stem {stem!r}; keep only one of them"
            )
        out[stem] = path
    return out


class PairedFileDataset(Dataset):
    """Dataset over a list of :class:`SampleFiles`; returns the pix2pixHD sample dict.

    Sample: ``label`` LongTensor [1,H,W], ``inst`` LongTensor [1,H,W] (the label when there is no instance
    map), ``image`` FloatTensor [3,H,W] in [-1,1] (only when the record has a photo), ``path`` (label file).
    With ``check_files`` every sample is decoded at construction (in threads, cached across runs): unusable ones are
    skipped with a warning naming each, and more than ``max_bad_fraction`` of them stops with the first reason
    (:func:`datamodules.base.scan_files`).
    """

    #: what an out-of-range label id asks the user to change (see :func:`datamodules.transforms.check_label_ids`)
    label_fix: str = TRAINING_LABEL_FIX

    def __init__(
        self,
        records: list[SampleFiles],
        label_nc: int,
        transform: PairedTransform | None = None,
        dontcare_id: int | None = None,
        check_files: bool = True,
        max_bad_fraction: float = 0.1,
    ) -> None:
        check_dontcare(dontcare_id, label_nc)
        self.label_nc = int(label_nc)
        self.dontcare_id = dontcare_id
        self.transform = transform
        self.records = list(records)
        if check_files and self.records:
            self.records = scan_files(
                self.records, self._check, lambda r: [p for p in (r.label, r.inst, r.image) if p], "samples",
                max_bad_fraction, cache_tag=f"paired|label_nc={self.label_nc}|dontcare={dontcare_id}")

    def _check(self, rec: SampleFiles) -> str | None:
        """Decode every file of ``rec`` (not only the headers): None when usable, else why not. Truncated files,
        colour label maps, label ids >= label_nc and size mismatches are found here, at start-up."""
        try:
            self._read(rec)
        except (ValueError, FileNotFoundError) as err:
            return str(err)
        return None

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, rec: SampleFiles) -> dict[str, Any]:
        """The untransformed sample of ``rec``; a ValueError naming the file when it cannot be used."""
        label = check_label_ids(read_label_map(rec.label), self.label_nc, rec.label, self.dontcare_id,
                                self.label_fix)
        sample: dict[str, Any] = {"label": label_to_tensor(label)}
        if rec.inst is not None:
            sample["inst"] = label_to_tensor(read_label_map(rec.inst))
        else:
            sample["inst"] = sample["label"].clone()
        if rec.image is not None:
            sample["image"] = image_to_tensor(read_image(rec.image))
        sample["path"] = rec.label
        size = tuple(sample["label"].shape[-2:])
        for key, path in (("inst", rec.inst), ("image", rec.image)):
            if path is not None and tuple(sample[key].shape[-2:]) != size:
                got = tuple(sample[key].shape[-2:])
                raise ValueError(
                    f"{path} is {got[0]}x{got[1]} but its label map {rec.label} is {size[0]}x{size[1]}; "
                    "label, instance map and photo must have the same size — fix or remove the sample"
                )
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self._read(self.records[index])
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

