"""File-backed (label map, instance map, photo) triplets matched by file stem: the shared reading, checking and
transform code of paired label-to-image datasets (pix2pixHD's folders and Cityscapes)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from datamodules.transforms import (
    PairedTransform,
    check_dontcare,
    check_label_ids,
    image_to_tensor,
    label_to_tensor,
    probe_image,
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
    With ``check_files`` every file header is opened at construction so corrupt files, colour label maps and
    size mismatches fail early (pixel-level corruption and label ids are checked when a sample is read).
    """

    def __init__(
        self,
        records: list[SampleFiles],
        label_nc: int,
        transform: PairedTransform | None = None,
        dontcare_id: int | None = None,
        check_files: bool = True,
    ) -> None:
        check_dontcare(dontcare_id, label_nc)
        self.records = list(records)
        self.label_nc = int(label_nc)
        self.dontcare_id = dontcare_id
        self.transform = transform
        if check_files:
            for rec in self.records:
                self._probe(rec)

    @staticmethod
    def _probe(rec: SampleFiles) -> None:
        size = probe_image(rec.label, label=True)
        others = []
        if rec.inst is not None:
            others.append((rec.inst, probe_image(rec.inst, label=True)))
        if rec.image is not None:
            others.append((rec.image, probe_image(rec.image)))
        for path, other in others:
            if other != size:
                raise ValueError(
                    f"{path} is {other[0]}x{other[1]} but its label map {rec.label} is {size[0]}x{size[1]}; "
                    "label, instance map and photo must have the same size — fix or remove the sample"
                )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        label = check_label_ids(read_label_map(rec.label), self.label_nc, rec.label, self.dontcare_id)
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
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

