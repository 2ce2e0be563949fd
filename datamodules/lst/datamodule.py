"""(content, style) pairs for Linear Style Transfer (Li et al., CVPR 2019).

Sample contract: ``{"content": FloatTensor[3,H,W] in [0,1], "style": FloatTensor[3,H,W] in [0,1],
"content_path": str, "style_path": str}``. Sample ``i`` of an epoch pairs content ``i`` with a style drawn by an
RNG seeded by (seed, split, epoch, i): training pairs change every epoch (the official code draws contents and
styles from two independently shuffled loaders) yet a run is reproducible; validation/test pairs are fixed.

Datasets:
  * ``synthetic_styles`` (default): procedural content scenes and style textures (``datamodules.lst.synthetic``),
    generated on the fly, so ``python run.py model=lst`` trains offline.
  * ``coco_wikiart``: any two image folders (searched recursively for jpg/jpeg/png/bmp/webp), e.g. MS-COCO
    train2014 as ``content_root`` and WikiArt as ``style_root`` (the paper's data).

Transforms (paper §4: shorter side resized to 256, then 256x256 crops; the official Loader uses loadSize 300,
fineSize 256): resize the shorter side to ``load_size``, crop ``crop_size`` (random + horizontal flip in training,
centred and unflipped for val/test).

Unreadable files: every file's header is probed in ``setup`` (``check_files``) and bad files are skipped with a
warning naming them; a file that fails later, when its pixels are decoded, is replaced by the next readable one with
a warning. ``skipped`` counts both (load-time skips inside DataLoader worker processes are only warned about there).
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from datamodules.base import BaseDataModule, check_count, scan_files
from datamodules.lst.synthetic import SyntheticImages
from datamodules.transforms import (
    PIL_ERRORS,
    TooLargeError,
    as_hw,
    bomb_error,
    check_pixels,
    unreadable_image_error,
)

log = logging.getLogger(__name__)

DATASETS = ("synthetic_styles", "coco_wikiart")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# ------------------------------------------------------------------------------------------------ folders
def list_images(root: str | os.PathLike | None, key: str) -> list[str]:
    """Sorted image files under ``root`` (recursive). Missing/empty folders raise errors naming ``key``."""
    if root is None or str(root) == "":
        raise ValueError(f"{key} is not set: pass {key}=<folder of images>")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{key}={root} does not exist or is not a folder; pass {key}=<folder of images>")
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                files.append(os.path.join(dirpath, name))
    if not files:
        raise ValueError(
            f"{key}={root} contains no images ({', '.join(IMAGE_EXTENSIONS)}, searched recursively); "
            f"point {key} at a folder of images"
        )
    return files


def _probe(path: str) -> str | None:
    """None if ``path`` decodes as an image (all of it, not only the header), else the reason."""
    try:
        with Image.open(path) as img:
            img.convert("RGB")
        return None
    except PIL_ERRORS as err:
        return str(unreadable_image_error(path, err))


class FolderImages:
    """Image files of a folder; ``image(i, max_side)`` decodes file ``i`` as RGB [3, H, W] in [0, 1]."""

    def __init__(self, files: Sequence[str], key: str, max_pixels: int | None = None,
                 cap_key: str = "task.max_pixels") -> None:
        self.files = list(files)
        self.key = key
        self.max_pixels, self.cap_key = max_pixels, cap_key

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> str:
        return self.files[index]

    def image(self, index: int, load_size: int | None = None) -> torch.Tensor:
        path = self.files[index]
        try:
            with Image.open(path) as img:
                check_pixels(path, *img.size, self.max_pixels, self.cap_key)
                if load_size is not None:
                    # JPEG: decode at a reduced scale >= the target (much faster for large WikiArt paintings)
                    w, h = img.size
                    s = load_size / min(w, h)
                    img.draft("RGB", (max(1, int(w * s)), max(1, int(h * s))))
                rgb = img.convert("RGB")
                if load_size is not None:
                    rgb = _resize_shorter(rgb, load_size)
        except TooLargeError:
            raise
        except Image.DecompressionBombError as err:
            raise bomb_error(path, err, self.cap_key) from err
        except PIL_ERRORS as err:
            raise unreadable_image_error(path, err) from err
        arr = np.asarray(rgb, dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _resize_shorter(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if min(w, h) == size:
        return img
    s = size / min(w, h)
    return img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)


# ------------------------------------------------------------------------------------------------ dataset
class StylePairDataset(Dataset):
    """Pairs (content ``i``, style drawn by a seeded RNG) with resize / crop / flip.

    ``dataset[i]`` uses epoch 0; ``dataset[(i, epoch)]`` (what :class:`EpochPairSampler` yields) draws that epoch's
    style and crop. ``random_crop``/``flip`` are for training; evaluation crops the centre and never flips.
    """

    def __init__(
        self,
        contents: FolderImages | SyntheticImages,
        styles: FolderImages | SyntheticImages,
        num_samples: int,
        load_size: int,
        crop_size: tuple[int, int],
        split: str = "train",
        seed: int = 0,
        random_crop: bool = True,
        flip: bool = True,
    ) -> None:
        self.contents, self.styles = contents, styles
        self.num_samples = int(num_samples)
        self.load_size = int(load_size)
        self.crop_size = crop_size
        self.split = split
        self.seed = int(seed)
        self.random_crop = bool(random_crop)
        self.flip = bool(flip)
        self._split_code = zlib.crc32(split.encode())
        self.bad_files: dict[str, str] = {}  # path -> reason, for files that failed when decoded

    def __len__(self) -> int:
        return self.num_samples

    def _rng(self, index: int, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self._split_code, int(epoch), int(index)])

    def _read(self, source: FolderImages | SyntheticImages, index: int) -> tuple[torch.Tensor, str]:
        """Image ``index`` of ``source``, or the next readable one (with a warning) when it cannot be decoded."""
        if isinstance(source, SyntheticImages):
            return source.image(index), source.path(index)
        n = len(source)
        for k in range(n):
            j = (index + k) % n
            path = source.path(j)
            if path in self.bad_files:
                continue
            try:
                return source.image(j, self.load_size), path
            except ValueError as err:
                self.bad_files[path] = str(err)
                msg = f"skipping unreadable image {path} ({source.key}): {err}; using another image instead"
                log.warning(msg)
                warnings.warn(msg, UserWarning, stacklevel=2)
        raise RuntimeError(f"no readable image left in {source.key}: all {n} files failed to decode")

    def _prepare(self, img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        h, w = img.shape[-2:]
        if min(h, w) != self.load_size:  # synthetic images are generated at load size already
            s = self.load_size / min(h, w)
            size = (max(self.load_size, round(h * s)), max(self.load_size, round(w * s)))
            img = torch.nn.functional.interpolate(img[None], size=size, mode="bilinear", antialias=True,
                                                  align_corners=False)[0].clamp(0, 1)
            h, w = size
        ch, cw = self.crop_size
        if self.random_crop:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        else:
            top, left = (h - ch) // 2, (w - cw) // 2
        img = img[:, top : top + ch, left : left + cw]
        if self.flip and rng.random() < 0.5:
            img = img.flip(-1)
        return img.contiguous()

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = (key, 0) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} {self.split} pairs")
        rng = self._rng(index, epoch)
        style_index = int(rng.integers(len(self.styles)))
        content, content_path = self._read(self.contents, index % len(self.contents))
        style, style_path = self._read(self.styles, style_index)
        return {
            "content": self._prepare(content, rng),
            "style": self._prepare(style, rng),
            "content_path": content_path,
            "style_path": style_path,
        }


class EpochPairSampler(Sampler):
    """Yields ``(index, epoch)``: indices shuffled by (seed, epoch) when ``shuffle``. Lightning calls ``set_epoch``
    before each training epoch; without it (e.g. under a distributed wrapper) each new iteration counts as the next
    epoch, so pairs still change."""

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True) -> None:
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch = epoch + 1
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        return iter([(i, epoch) for i in order])


# ------------------------------------------------------------------------------------------------ datamodule
class StylePairDataModule(BaseDataModule):
    """Train/val/test loaders of (content, style) pairs for LST.

    ``num_train/num_val/num_test``: for ``synthetic_styles`` the number of content scenes of each split (styles:
    ``num_style_images`` per split, default = as many as contents); for ``coco_wikiart`` a cap on the number of
    content images (null = all). Validation/test of ``coco_wikiart`` use ``val_content_root`` /
    ``val_style_root`` when set, else the first ``num_val`` / ``num_test`` files of the training folders (centre
    crop, no flip; style transfer has no ground truth, so validation only tracks the losses).
    ``image_size`` (what ``task=summary`` reads) must equal ``crop_size`` when given; ``crop_size`` must be a
    multiple of ``size_multiple`` (the encoder's total stride) so decoded images have the input's size.
    """

    def __init__(
        self,
        dataset: str = "synthetic_styles",
        content_root: str | None = None,
        style_root: str | None = None,
        load_size: int = 256,
        crop_size: int = 256,
        flip: bool = True,
        batch_size: int = 8,
        num_workers: int = 0,
        num_train: int | None = 64,
        num_val: int | None = 4,
        num_test: int | None = 4,
        seed: int = 0,
        num_style_images: int | None = None,
        val_content_root: str | None = None,
        val_style_root: str | None = None,
        image_size: int | Sequence[int] | None = None,
        size_multiple: int = 1,
        check_files: bool = True,
        max_bad_fraction: float = 0.1,
    ) -> None:
        synthetic = dataset == "synthetic_styles"
        super().__init__(dataset, DATASETS, batch_size, num_workers, seed, num_train, num_val, num_test,
                         counts_optional=not synthetic)
        for name, value in (("load_size", load_size), ("crop_size", crop_size), ("size_multiple", size_multiple)):
            check_count(name, value, allow_none=False)
        check_count("num_style_images", num_style_images, allow_none=True)
        if crop_size > load_size:
            raise ValueError(
                f"dataset.crop_size={crop_size} is larger than dataset.load_size={load_size} (the shorter side "
                f"after resizing); use crop_size <= load_size"
            )
        if crop_size % size_multiple:
            raise ValueError(
                f"dataset.crop_size={crop_size} is not a multiple of {size_multiple}, the encoder's total stride "
                f"(model.level); use e.g. {max(size_multiple, crop_size // size_multiple * size_multiple)}"
            )
        if image_size is not None and as_hw(image_size, "dataset.image_size") != (crop_size, crop_size):
            raise ValueError(f"dataset.image_size={list(image_size)} must equal [crop_size, crop_size] = "
                             f"[{crop_size}, {crop_size}]")
        if synthetic and (content_root or style_root):
            log.warning("dataset synthetic_styles ignores content_root/style_root; use dataset=coco_wikiart")
        self._listings: dict[tuple[str, str], list[str]] = {}
        if not synthetic:  # fail at start-up, before any training, when a folder is wrong
            for root, key in ((content_root, "dataset.content_root"), (style_root, "dataset.style_root")):
                self._listings[(str(root), key)] = list_images(root, key)

        self.content_root, self.style_root = content_root, style_root
        self.val_content_root, self.val_style_root = val_content_root, val_style_root
        self.load_size, self.crop_size = int(load_size), int(crop_size)
        self.flip = bool(flip)
        self.num_style_images = num_style_images
        self.check_files = bool(check_files)
        self.max_bad_fraction = float(max_bad_fraction)
        self.skipped_files: dict[str, str] = {}  # found unreadable when probing in setup
        self._folders: dict[tuple[str, str], FolderImages] = {}

    # ------------------------------------------------------------------------------------------- skipped
    @property
    def skipped(self) -> int:
        """Number of unreadable images skipped (probed in setup, or failed when decoded in this process)."""
        return len({**self.skipped_files, **self._runtime_bad()})

    def _folder(self, root: str | None, key: str) -> FolderImages:
        cache_key = (str(root), key)
        if cache_key in self._folders:
            return self._folders[cache_key]
        files = self._listings.get(cache_key) or list_images(root, key)
        if self.check_files:
            good = scan_files(files, _probe, lambda path: [path], f"images of {key}={root}", self.max_bad_fraction,
                              cache_tag="lst-images")
            self.skipped_files.update({p: "unreadable" for p in set(files) - set(good)})
            files = good
        self._folders[cache_key] = FolderImages(files, key)
        return self._folders[cache_key]

    # ------------------------------------------------------------------------------------------- splits
    def _make(self, split: str) -> StylePairDataset:
        train = split == "train"
        num = {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]
        offset = {"train": 0, "val": 1, "test": 2}[split]
        if self.dataset_name == "synthetic_styles":
            size = (self.load_size, self.load_size)
            contents: FolderImages | SyntheticImages = SyntheticImages("content", int(num), size, self.seed, split)
            styles: FolderImages | SyntheticImages = SyntheticImages(
                "style", int(self.num_style_images or num), size, self.seed, split)
            n = int(num)
        else:
            c_root, s_root = self.content_root, self.style_root
            c_key, s_key = "dataset.content_root", "dataset.style_root"
            if not train and self.val_content_root:
                c_root, c_key = self.val_content_root, "dataset.val_content_root"
            if not train and self.val_style_root:
                s_root, s_key = self.val_style_root, "dataset.val_style_root"
            contents, styles = self._folder(c_root, c_key), self._folder(s_root, s_key)
            n = len(contents) if num is None else min(int(num), len(contents))
            if num is not None and num < len(contents):
                (log.warning if train else log.info)(
                    f"using {num} of {len(contents)} content images for {split} (dataset.num_{split}={num}); "
                    f"set it to null to use all")
        return StylePairDataset(
            contents, styles, n, self.load_size, (self.crop_size, self.crop_size), split=split,
            seed=self.seed + offset, random_crop=train, flip=self.flip and train,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the splits needed for ``stage`` (probing every file header) and read one sample of each."""
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._make("train")
            _ = self.train_set[0]
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self._make("val")
            _ = self.val_set[0]
        if stage in (None, "test") and self.test_set is None:
            self.test_set = self._make("test")
            _ = self.test_set[0]
        self._report_skipped()

    def _report_skipped(self) -> None:
        if self.skipped:
            log.warning("%d unreadable images skipped so far (e.g. %s)", self.skipped,
                        next(iter({**self.skipped_files, **self._runtime_bad()})))

    def _runtime_bad(self) -> dict[str, str]:
        bad: dict[str, str] = {}
        for ds in (self.train_set, self.val_set, self.test_set):
            if ds is not None:
                bad.update(ds.bad_files)
        return bad

    def teardown(self, stage: str | None = None) -> None:
        self._report_skipped()

    # ------------------------------------------------------------------------------------------- loaders
    def sampler(self, split: str, dataset: Dataset) -> Sampler | None:
        """Training: (index, epoch) keys, new pairs every epoch; evaluation: plain indices = epoch 0, fixed pairs."""
        return EpochPairSampler(len(dataset), self.seed, shuffle=True) if split == "train" else None
