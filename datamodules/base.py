"""The small base every paper's datamodule builds on: the argument checks they share and the loaders."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Sampler

#: Lightning's stage that builds each split in ``setup``
SPLIT_STAGES = {"train": "fit", "val": "validate", "test": "test", "predict": "predict"}


def check_count(name: str, value: object, allow_none: bool) -> None:
    """``dataset.<name>`` must be a positive int (or null = all files, where ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = " or null (= all files)" if allow_none else ""
        raise ValueError(f"dataset.{name}={value!r} must be an int >= 1{extra}")


class BaseDataModule(pl.LightningDataModule):
    """Checks ``dataset``, ``batch_size``, ``num_workers`` and the split sizes, and builds the loaders of the
    splits a subclass's ``setup`` puts in ``train_set`` / ``val_set`` / ``test_set`` / ``predict_set``.

    ``num_train/num_val/num_test`` may be null (= every file) when ``counts_optional`` (real datasets).
    Training batches are shuffled, unless :meth:`sampler` gives a sampler for the split.
    """

    def __init__(self, dataset: str, known: Sequence[str], batch_size: int, num_workers: int, seed: int,
                 num_train: int | None, num_val: int | None, num_test: int | None,
                 counts_optional: bool) -> None:
        super().__init__()
        if dataset not in known:
            raise ValueError(f"dataset.dataset={dataset!r} is unknown; use one of {tuple(known)}")
        check_count("batch_size", batch_size, allow_none=False)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"dataset.num_workers={num_workers!r} must be an int >= 0")
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            check_count(name, value, allow_none=counts_optional)
        self.dataset_name = dataset
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.predict_set: Dataset | None = None

    def sampler(self, split: str, dataset: Dataset) -> Sampler | None:
        """The sampler of ``split`` (None: shuffled training batches, ordered evaluation batches)."""
        return None

    def loader(self, split: str) -> DataLoader:
        """The DataLoader of ``split`` (train / val / test / predict), setting the split up when needed."""
        if getattr(self, f"{split}_set") is None:
            self.setup(SPLIT_STAGES[split])
        dataset = getattr(self, f"{split}_set")
        sampler = self.sampler(split, dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=split == "train" and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0 and split in ("train", "val"),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict")
