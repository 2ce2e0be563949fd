"""The one home of condsynth checkpoints: the safe read, the typed record of what condsynth stores, and its writer.

Every reader of a ``.ckpt`` goes through :func:`read_checkpoint`: ``torch.load(weights_only=True)`` (PyTorch's
guidance for files from elsewhere: tensors, containers and plain values only, nothing that runs code), memory
mapped, and kept for the life of the process while the file is unchanged, so a run reads each file once
(the command line's model/stage look-up, the task, the studio). A file that is not weights-only safe is refused
with one line; there is no fallback to the full unpickler.

:class:`CheckpointRecord` is the typed view of the ``condsynth`` entry that :func:`write_meta` puts in every
checkpoint (model, stage, the resolved config, and what ``import_official`` / ``cluster_features`` add).
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import threading
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightning_modules.stages import StageError

log = logging.getLogger(__name__)

#: the key of condsynth's own entry in a Lightning checkpoint
META_KEY = "condsynth"
#: how many recently read checkpoints stay mapped (each is memory-mapped: little resident memory)
CACHE_SIZE = 4

#: reads that went to disk, per real path (tests count them: each file is read once per run)
DISK_READS: Counter[str] = Counter()
_cache: OrderedDict[str, tuple[tuple[int, int, int], dict[str, Any]]] = OrderedDict()
_lock = threading.Lock()


class CheckpointError(StageError):
    """A checkpoint that cannot be used: unreadable, refused as unsafe, or of the wrong model."""


class UnsafeCheckpointError(CheckpointError):
    """A file refused because loading it would run code (not weights-only safe)."""


def _signature(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _refusal(path: str, err: BaseException) -> str:
    reason = " ".join(str(err).split())
    for marker in ("Unsupported global:", "Unsupported operand", "Weights only load failed"):
        if marker in reason:
            reason = reason[reason.index(marker):]
            break
    return (f"refused {path}: it is not weights-only safe (it holds Python objects whose loading would run code: "
            f"{reason[:300]}). condsynth loads checkpoints with torch.load(weights_only=True) only; use a "
            f"checkpoint written by condsynth, or official weights through task=import_official")


def safe_torch_load(path: str) -> Any:
    """``torch.load(path, weights_only=True)`` (memory-mapped when the file allows it) with one-line errors: a file
    that is not weights-only safe is refused, never read with the full unpickler. Any layout (Lightning's own
    temporary files too); :func:`read_checkpoint` adds condsynth's layout check."""
    import torch

    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"could not read checkpoint {path}: it is not a PyTorch checkpoint (no zip archive: truncated, a "
            f"text file, or saved by PyTorch < 1.6); use another one (checkpoints/ keeps the last and the best)")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(_refusal(path, err)) from None
    except Exception as err:  # noqa: BLE001 - any other failure here means the file is unusable
        raise CheckpointError(
            f"could not read checkpoint {path}: {' '.join(str(err).split())[:300]}. The file may be truncated "
            f"or not a condsynth checkpoint; use another one (checkpoints/ keeps the last and the best)"
        ) from None
    return ckpt


def _load(path: str) -> dict[str, Any]:
    from networks.official import not_a_checkpoint_hint

    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        hint = not_a_checkpoint_hint(ckpt, path)
        raise CheckpointError(hint or f"{path} is not a Lightning checkpoint (no 'state_dict'); pass a condsynth "
                                      f".ckpt file")
    return ckpt


def read_checkpoint(path: str | os.PathLike, cached: bool = True) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict (``state_dict``, ``condsynth``, Lightning's loop and optimizer state),
    read safely. The returned dict and its ``state_dict`` and ``condsynth`` entries are the caller's to change;
    the tensors are shared with later reads of the same unchanged file (``cached=False``: a fresh read, for a
    caller that changes tensors in place, as a resumed optimizer does)."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass the path of a trained checkpoint "
                                f"(e.g. outputs/train/<model>_<stage>/latest/checkpoints/last.ckpt)")
    real = os.path.realpath(path)
    if not cached:
        DISK_READS[real] += 1
        return _load(path)
    signature = _signature(real)
    with _lock:
        hit = _cache.get(real)
        if hit is None or hit[0] != signature:
            DISK_READS[real] += 1
            _cache[real] = (signature, _load(path))
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        _cache.move_to_end(real)
        ckpt = _cache[real][1]
    out = dict(ckpt)
    out["state_dict"] = dict(ckpt["state_dict"])
    if META_KEY in ckpt:
        out[META_KEY] = copy.deepcopy(ckpt[META_KEY])
    return out


def forget(path: str | os.PathLike) -> None:
    """Drop ``path`` from the read cache (after the caller has rewritten it, or to free its mapping)."""
    with _lock:
        _cache.pop(os.path.realpath(str(path)), None)


@dataclass
class CheckpointRecord:
    """What condsynth stores in a checkpoint, typed. ``config`` is the run's resolved config as stored: data from a
    file, never instantiated as it is (:mod:`lightning_modules.loading` rebuilds it from ``conf/``)."""

    path: str
    model: str | None
    stage: str | None
    config: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    epoch: int = 0
    official: dict[str, Any] | None = None
    feature_clusters: dict[str, Any] | None = None
    state_dict: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: the weights hold no training-only networks (an exported bundle)
    inference_only: bool = False

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], path: str) -> CheckpointRecord:
        meta = ckpt.get(META_KEY) or {}
        if not isinstance(meta, Mapping):
            raise CheckpointError(f"{path}: its '{META_KEY}' entry is not a mapping; pass a checkpoint written by "
                                  f"condsynth")
        config = meta.get("config") if isinstance(meta.get("config"), Mapping) else {}

        def name(key: str) -> str | None:
            value = meta.get(key)
            if value is not None and not isinstance(value, str):
                raise CheckpointError(f"{path}: stored {key} {value!r} is not a name")
            return value

        return cls(path=path, model=name("model"), stage=name("stage"), config=dict(config),
                   step=int(ckpt.get("global_step") or 0), epoch=int(ckpt.get("epoch") or 0),
                   official=meta.get("official"), feature_clusters=meta.get("feature_clusters"),
                   state_dict=ckpt["state_dict"])

    def stored(self, group: str) -> dict[str, Any]:
        """The stored config's ``group`` section (``model``, ``dataset``, ``size``...), or {}."""
        value = self.config.get(group)
        return dict(value) if isinstance(value, Mapping) else {}

    def require_model(self, model: str, fix: str, title: str | None = None) -> None:
        """Stop unless this is a checkpoint of ``model`` (``title``: the paper's name in the message); ``fix`` says
        what to pass instead."""
        if self.model != model:
            raise CheckpointError(f"{self.path} is a '{self.model}' checkpoint, not a {title or repr(model)} one: "
                                  f"{fix}")


def read_record(path: str | os.PathLike) -> CheckpointRecord:
    """The :class:`CheckpointRecord` of ``path`` (one safe read per unchanged file and process)."""
    return CheckpointRecord.from_checkpoint(read_checkpoint(path), str(path))


def write_meta(checkpoint: dict[str, Any], model: str, stage: str, config: Mapping[str, Any] | None,
               **extra: Any) -> None:
    """Put condsynth's entry into a checkpoint dict being saved (the only writer of its layout)."""
    checkpoint[META_KEY] = {"model": model, "stage": stage, "config": config, **extra}


#: the entries beyond model, stage and config that tasks add (:class:`CheckpointRecord` reads each)
EXTRA_META = ("official", "feature_clusters")


def update_meta(checkpoint: dict[str, Any], **fields: Any) -> None:
    """Add ``official`` (task=import_official) or ``feature_clusters`` (task=cluster_features) to condsynth's entry
    of a checkpoint dict (one written by :func:`write_meta`)."""
    unknown = sorted(set(fields) - set(EXTRA_META))
    if unknown:
        raise KeyError(f"{unknown} are not condsynth checkpoint entries ({', '.join(EXTRA_META)})")
    checkpoint.setdefault(META_KEY, {}).update(fields)

