"""Atomic file writes: the one helper every checkpoint, report, image and export write goes through.

A file is written under a temporary name next to its target, flushed to disk, then renamed over the target, so a
kill at any moment leaves either the old file or the new one, never a half-written one under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

#: random bytes (hex) in a temporary name (with the pid: unique per writer, even across hosts)
TMP_RANDOM_BYTES = 4
#: what :func:`temporary_path` makes (and ``*.ckpt.tmp``, the fixed name of older versions): left-overs of a killed
#: writer, removed at the start of a run (:func:`remove_stale_temporaries`)
_TMP_NAME = re.compile(r"\.\d+\.[0-9a-f]+\.tmp$|\.ckpt\.tmp$|^\..+\.\d+\.[0-9a-f]+\.partial(\.[^.]*)?$")


def temporary_path(path: str, keep_extension: bool = False) -> str:
    """A name next to ``path`` that no other writer uses: ``<path>.<pid>.<random>.tmp``; with ``keep_extension``
    ``<dir>/.<stem>.<pid>.<random>.partial<ext>`` (writers that pick the format from the extension: PNG, ONNX,
    video containers). Two processes writing one target never share a temporary file, so the last rename wins
    with a complete file."""
    tag = f"{os.getpid()}.{secrets.token_hex(TMP_RANDOM_BYTES)}"
    if not keep_extension:
        return f"{path}.{tag}.tmp"
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder or ".", f".{stem}.{tag}.partial{ext}")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`temporary_path`'s (or an older fixed ``*.ckpt.tmp``)."""
    return bool(_TMP_NAME.search(name))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files that killed writers left under ``folder`` (a run folder whose lock this process
    holds, so no live writer owns them); returns the removed paths."""
    removed = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if is_temporary(name):
                path = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    os.remove(path)
                    removed.append(path)
    return removed


def _fsync_dir(folder: str) -> None:
    """Make a rename durable: a crash right after must not bring the old file back."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(tmp: str, path: str) -> None:
    """fsync ``tmp``, rename it over ``path`` and fsync the folder."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_extension: bool = False) -> Iterator[str]:
    """Yield a temporary path to write ``path``'s content to; on success it replaces ``path``, on an error it is
    removed and ``path`` is left as it was."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_path(path, keep_extension)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return os.fspath(path)


class DiskFullError(ValueError):
    """A write that ran out of space (ENOSPC / EDQUOT): one line naming the folder, its free space and the space
    needed; the previous file under the name is kept (the write went to a temporary)."""


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: how torch's zip writer reports a failed write (the OSError of the file object is not passed on)
_TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


def payload_bytes(obj: Any) -> int:
    """The bytes of the tensors in ``obj`` (dicts, lists, tuples walked): about the size ``torch.save`` writes."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(payload_bytes(v) for v in obj)
    return 0


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB" if n < 2**30 else f"{n / 2**30:.2f} GB"


def disk_full_error(path: str, needed: int) -> DiskFullError:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    return DiskFullError(f"no space left on the device of {folder} writing {os.path.basename(path)}: it needs about "
                         f"{_mb(needed)}, {_mb(free)} is free; free {_mb(max(needed - free, 0) or needed)} or more "
                         f"there (or point paths.output_dir elsewhere); the previous {os.path.basename(path)} is kept")


def _is_disk_full(err: BaseException) -> bool:
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    return isinstance(err, RuntimeError) and any(s in str(err) for s in _TORCH_WRITE_FAILURES)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> str:
    """torch.save to a temporary file of this writer's own, then rename over ``path``: readers never see a partial
    file, and two writers of one path never tear each other's. A full disk is one :class:`DiskFullError` line (not
    torch's ``inline_container.cc ... unexpected pos``)."""
    import torch  # here: run.py's start-up (stale temporaries, config errors) does not pay for importing torch

    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
    except (OSError, RuntimeError) as err:
        if _is_disk_full(err):
            raise disk_full_error(os.fspath(path), payload_bytes(obj)) from err
        raise
    return os.fspath(path)
