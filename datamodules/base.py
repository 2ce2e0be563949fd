"""The small base every paper's datamodule builds on: the argument checks they share and the loaders."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Lightning's stage that builds each split in ``setup``
SPLIT_STAGES = {"train": "fit", "val": "validate", "test": "test", "predict": "predict"}


def check_count(name: str, value: object, allow_none: bool) -> None:
    """``dataset.<name>`` must be a positive int (or null = all files, where ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = " or null (= all files)" if allow_none else ""
        raise ValueError(f"dataset.{name}={value!r} must be an int >= 1{extra}")


def _scan_cache_path(what: str) -> str:
    root = os.environ.get("CONDSYNTH_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "condsynth"))
    return os.path.join(root, "scans", hashlib.sha1(what.encode()).hexdigest()[:16] + ".json")


def _stat_key(paths: Sequence[str]) -> str:
    parts = []
    for path in paths:
        try:
            st = os.stat(path)
            parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{path}:missing")
    return "|".join(parts)


def scan_files(items: Sequence[T], check: Callable[[T], str | None], files_of: Callable[[T], Sequence[str]],
               what: str, max_bad_fraction: float, cache_tag: str = "", workers: int | None = None) -> list[T]:
    """The one rule for bad files, for every datamodule: decode-check every item (in threads, and cached by file
    size and modification time, so a re-run of a 3,000-image folder costs only a stat per file), skip the bad ones
    with one warning that names each file, its reason and the count, and stop when more than ``max_bad_fraction``
    of them (or all) are bad. ``check`` returns None for a good item, else the reason."""
    if not 0 <= max_bad_fraction < 1:
        raise ValueError(f"dataset.max_bad_fraction={max_bad_fraction} must be in [0, 1)")
    folder = os.path.dirname(os.path.abspath(files_of(items[0])[0])) if items else ""
    cache_file = _scan_cache_path(f"{what}|{cache_tag}|{folder}")
    try:
        with open(cache_file) as f:
            cache: dict[str, str | None] = json.load(f)
    except (OSError, ValueError):
        cache = {}
    keys = [_stat_key(files_of(item)) for item in items]
    todo = [i for i, key in enumerate(keys) if key not in cache]
    if todo:
        with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
            for i, reason in zip(todo, pool.map(lambda i: check(items[i]), todo), strict=True):
                cache[keys[i]] = reason
        try:
            from datamodules.atomic_writes import atomic_write_text

            atomic_write_text(cache_file, json.dumps({k: cache[k] for k in keys}))
        except OSError as err:
            log.info("scan cache %s not written: %s", cache_file, err)
    bad = [(item, cache[key]) for item, key in zip(items, keys, strict=True) if cache[key]]
    if not bad:
        return list(items)
    if len(bad) == len(items) or len(bad) > max_bad_fraction * len(items):
        raise ValueError(
            f"{len(bad)} of {len(items)} {what} are unusable, more than dataset.max_bad_fraction={max_bad_fraction} "
            f"allows; the first: {bad[0][1]}"
        )
    listing = "; ".join(f"{files_of(item)[0]}: {reason}" for item, reason in bad)
    message = f"skipping {len(bad)} of {len(items)} {what} (dataset.max_bad_fraction={max_bad_fraction}): {listing}"
    log.warning(message)
    warnings.warn(message, UserWarning, stacklevel=2)
    skipped = {id(item) for item, _ in bad}
    return [item for item in items if id(item) not in skipped]


def worker_init(worker_id: int) -> None:
    """Each DataLoader worker runs one intra-op thread (``tasks/threads.py`` counts the workers' CPUs out of the
    main process's threads), then Lightning's per-worker seeding when ``seed_everything(workers=True)`` asked for
    it: Lightning adds its own only to loaders that have none."""
    import torch

    torch.set_num_threads(1)
    if int(os.environ.get("PL_SEED_WORKERS", "0") or 0):
        from lightning_fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


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
            worker_init_fn=worker_init if self.num_workers > 0 else None,
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
