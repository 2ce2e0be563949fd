"""LightningDataModule for pix2pixHD-style label-to-image training (synthetic, folders, Cityscapes)."""

from __future__ import annotations

import logging
import os
from typing import Any

from torch.utils.data import DataLoader, Dataset, Subset

from datamodules.base import BaseDataModule, check_count
from datamodules.pix2pixhd.cityscapes import CityscapesDataset, has_split
from datamodules.pix2pixhd.folders import Pix2PixHDFolderDataset, has_phase
from datamodules.pix2pixhd.label_folder import LabelFolderDataset
from datamodules.pix2pixhd.synthetic import MIN_LABEL_NC, SyntheticScenesDataset
from datamodules.transforms import (
    RESIZE_MODES,
    PairedTransform,
    as_hw,
    check_dontcare,
    stride_warning,
    training_size,
)

log = logging.getLogger(__name__)

DATASETS = ("synthetic_scenes", "pix2pixhd_folders", "cityscapes")


class Pix2PixHDDataModule(BaseDataModule):
    """Builds train/val/test/predict loaders of pix2pixHD samples (``label``, ``inst``, ``image``, ``path``).

    Sizes: ``image_size`` (and ``load_size``) are full-resolution; the training size is
    ``image_size * scale`` (``scale=0.5`` for pix2pixHD's global stage), each side fitted to ``size_multiple``
    (the generator's total stride) with a warning when changed. ``resize_mode``:
      * ``resize``: every map is resized to ``train_size`` (``load_size`` must be null);
      * ``resize_and_crop`` / ``scale_width_and_crop``: resize to ``load_size * scale`` then crop
        ``train_size`` (random in training, centred otherwise);
      * ``scale_width``: scale to width ``(load_size or image_size[1]) * scale``;
      * ``crop``: crop ``train_size`` from the unresized image; ``none``: keep file sizes (needs scale=1).
    For synthetic scenes ``num_train/num_val/num_test`` are the split sizes; for real datasets they cap the
    number of samples (null = all; a capped train split is logged as a warning).
    """

    def __init__(
        self,
        dataset: str = "synthetic_scenes",
        root: str | None = None,
        label_nc: int = 8,
        image_size: tuple[int, int] = (64, 64),
        scale: float = 1.0,
        load_size: int | tuple[int, int] | None = None,
        resize_mode: str = "resize",
        flip: bool = True,
        size_multiple: int = 16,
        use_instance: bool = True,
        dontcare_id: int | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        num_train: int | None = 64,
        num_val: int | None = 8,
        num_test: int | None = 8,
        num_styles: int = 3,
        seed: int = 0,
        predict_label_dir: str | None = None,
        predict_inst_dir: str | None = None,
        max_objects: int = 6,
        noise_std: float = 0.02,
        check_files: bool = True,
        max_bad_fraction: float = 0.1,
    ) -> None:
        real = dataset != "synthetic_scenes"
        super().__init__(dataset, DATASETS, batch_size, num_workers, seed, num_train, num_val, num_test,
                         counts_optional=real)
        if real and not root:
            raise ValueError(f"dataset {dataset!r} needs dataset.root=<folder of the dataset>; got {root!r}")
        check_dontcare(dontcare_id, label_nc)
        if dataset == "synthetic_scenes" and label_nc < MIN_LABEL_NC:
            raise ValueError(f"dataset.label_nc={label_nc} is too small for synthetic_scenes; use >= {MIN_LABEL_NC}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"dataset.resize_mode={resize_mode!r} is unknown; use one of {RESIZE_MODES}")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 1:
            raise ValueError(f"dataset.scale={scale!r} must be in (0, 1] (0.5 = pix2pixHD global stage)")
        if resize_mode == "none" and scale != 1:
            raise ValueError(f"resize_mode='none' cannot apply dataset.scale={scale}; use resize_mode='resize'")
        for name, value in (("num_styles", num_styles), ("size_multiple", size_multiple)):
            check_count(name, value, allow_none=False)

        self.root = None if root is None else os.fspath(root)
        self.label_nc = int(label_nc)
        self.image_size = as_hw(image_size, "dataset.image_size")
        self.scale = float(scale)
        self.resize_mode = resize_mode
        self.flip = bool(flip)
        self.size_multiple = int(size_multiple)
        self.use_instance = bool(use_instance)
        self.dontcare_id = dontcare_id
        self.num_styles = int(num_styles)
        self.predict_label_dir = predict_label_dir
        self.predict_inst_dir = predict_inst_dir
        self.max_objects = max_objects
        self.noise_std = noise_std
        self.check_files = bool(check_files)
        self.max_bad_fraction = float(max_bad_fraction)

        scaled = training_size(self.image_size, self.scale, 1)
        self._train_size = training_size(self.image_size, self.scale, self.size_multiple)
        if self._train_size != scaled:
            log.warning(stride_warning(scaled, self.size_multiple, self._train_size))
        self.train_transform = self._make_transform(load_size, train=True)
        self.eval_transform = self._make_transform(load_size, train=False)
        if dataset == "synthetic_scenes":  # validates the generator's arguments now (no disk needed)
            self._synthetic("train", int(num_train), 0, train=True)  # type: ignore[arg-type]


    # ----------------------------------------------------------------------------------- transforms
    @property
    def train_size(self) -> tuple[int, int]:
        """Effective (H, W) of training samples (for ``scale_width``/``none``: the nominal size)."""
        return self._train_size

    @staticmethod
    def _scaled_width(load_size: Any, scale: float) -> int:
        if isinstance(load_size, bool) or not isinstance(load_size, int) or load_size < 1:
            raise ValueError(
                f"dataset.load_size={load_size!r} must be one positive int (the full-resolution width) for the "
                "scale_width resize modes"
            )
        return training_size((load_size, load_size), scale, 1)[1]

    def _make_transform(self, load_size: Any, train: bool) -> PairedTransform:
        mode, s = self.resize_mode, self.scale
        crop = None
        load: Any = None
        if mode == "resize":
            if load_size is not None:
                raise ValueError(
                    f"dataset.load_size={load_size!r} is unused with resize_mode='resize' (samples are resized "
                    "to image_size * scale); set it to null"
                )
            load = self._train_size
        elif mode in ("resize_and_crop", "scale_width_and_crop"):
            if load_size is None:
                raise ValueError(f"resize_mode={mode!r} needs dataset.load_size (full-resolution, before scale)")
            if mode == "resize_and_crop":
                load = training_size(as_hw(load_size, "dataset.load_size"), s, 1)
            else:
                load = self._scaled_width(load_size, s)
            crop = self._train_size
        elif mode == "scale_width":
            load = self._scaled_width(load_size, s) if load_size is not None else self._train_size[1]
        elif mode == "crop":
            crop = self._train_size
        if mode in ("crop", "none") and load_size is not None:
            raise ValueError(f"dataset.load_size={load_size!r} is unused with resize_mode={mode!r}; set it to null")
        return PairedTransform(
            load_size=load,
            crop_size=crop,
            resize_mode=mode,
            flip=self.flip and train,
            size_multiple=self.size_multiple,
            random_crop=train,
        )

    # -------------------------------------------------------------------------------------- datasets
    def _synthetic(self, split: str, num: int, seed_offset: int, train: bool) -> SyntheticScenesDataset:
        return SyntheticScenesDataset(
            num_samples=num,
            image_size=self.image_size,
            label_nc=self.label_nc,
            num_styles=self.num_styles,
            max_objects=self.max_objects,
            seed=self.seed + seed_offset,
            split=split,
            noise_std=self.noise_std,
            use_instance=self.use_instance,
            transform=self.train_transform if train else self.eval_transform,
        )

    def _real(self, split: str, train: bool) -> Dataset:
        transform = self.train_transform if train else self.eval_transform
        assert self.root is not None
        if self.dataset_name == "cityscapes":
            return CityscapesDataset(
                self.root, split, self.label_nc, self.use_instance, transform, self.dontcare_id, self.check_files,
                self.max_bad_fraction,
            )
        return Pix2PixHDFolderDataset(
            self.root,
            split,
            self.label_nc,
            self.use_instance,
            transform,
            self.dontcare_id,
            require_images=True,
            check_files=self.check_files,
            max_bad_fraction=self.max_bad_fraction,
        )

    def _has(self, split: str) -> bool:
        assert self.root is not None
        if self.dataset_name == "cityscapes":
            return has_split(self.root, split)
        return has_phase(self.root, split)

    @staticmethod
    def _cap(ds: Dataset, num: int | None, what: str, warn: bool = False) -> Dataset:
        n = len(ds)  # type: ignore[arg-type]
        if num is None or num >= n:
            return ds
        msg = f"using only {num} of {n} {what} samples (dataset.num_{what}={num}); set it to null to use all"
        (log.warning if warn else log.info)(msg)
        return Subset(ds, range(num))

    def _eval_split(self, which: str) -> Dataset:
        """Real-dataset val/test split with the documented fallbacks."""
        num = self.num_val if which == "val" else self.num_test
        if self.dataset_name == "cityscapes":
            # Cityscapes test labels are not public (the released test label maps are dummies): use val.
            if which == "test":
                log.info("cityscapes: test labels are not public; the test split uses the val split")
            if not self._has("val"):
                raise FileNotFoundError(
                    f"cityscapes: folder {self.root}/gtFine/val does not exist; the val split is required "
                    f"for validation and testing — check dataset.root"
                )
            return self._cap(self._real("val", train=False), num, which)
        for split in ((which, "test") if which == "val" else (which, "val")):
            if self._has(split):
                if split != which:
                    log.info(f"{self.dataset_name}: no {which} folders under {self.root}; using phase {split!r}")
                return self._cap(self._real(split, train=False), num, which)
        ds = self._real("train", train=False)
        n = min(len(ds), num or len(ds))
        log.info(
            f"{self.dataset_name}: no val or test folders under {self.root}; using the first {n} train samples "
            f"(unflipped) for {which}"
        )
        return Subset(ds, range(n))

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets needed for ``stage`` (they check the files on disk) and read one sample each."""
        synthetic = self.dataset_name == "synthetic_scenes"
        if stage in (None, "fit") and self.train_set is None:
            if synthetic:
                self.train_set = self._synthetic("train", self.num_train, 0, train=True)  # type: ignore[arg-type]
            else:
                self.train_set = self._cap(self._real("train", train=True), self.num_train, "train", warn=True)
            _ = self.train_set[0]
        if stage in (None, "fit", "validate") and self.val_set is None:
            if synthetic:
                self.val_set = self._synthetic("val", self.num_val, 1, train=False)  # type: ignore[arg-type]
            else:
                self.val_set = self._eval_split("val")
            _ = self.val_set[0]
        if stage in (None, "test") and self.test_set is None:
            if synthetic:
                self.test_set = self._synthetic("test", self.num_test, 2, train=False)  # type: ignore[arg-type]
            else:
                self.test_set = self._eval_split("test")
            _ = self.test_set[0]
        if stage == "predict" and self.predict_set is None:
            self.predict_set = self._predict_set()
            _ = self.predict_set[0]

    def _predict_set(self) -> Dataset:
        if not self.predict_label_dir:
            raise ValueError("predict needs label maps: set dataset.predict_label_dir=<folder of label maps>")
        if self.use_instance and not self.predict_inst_dir:
            log.warning(
                "use_instance=true but dataset.predict_inst_dir is unset: instance maps default to the label "
                "maps (no instance boundaries between touching objects of one class)"
            )
        return LabelFolderDataset(
            self.predict_label_dir,
            self.label_nc,
            inst_dir=self.predict_inst_dir if self.use_instance else None,
            transform=self.eval_transform,
            dontcare_id=self.dontcare_id,
            check_files=self.check_files,
            max_bad_fraction=self.max_bad_fraction,
        )

    # ------------------------------------------------------------------------------------- loaders
    def predict_dataloader(self) -> DataLoader:
        """Batches of label maps from ``predict_label_dir`` (samples without ``image``)."""
        if not self.predict_label_dir:
            raise ValueError("predict needs label maps: set dataset.predict_label_dir=<folder of label maps>")
        return self.loader("predict")
