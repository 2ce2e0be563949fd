"""Atomic file writes: the one helper every checkpoint, report, image and export write goes through.

A file is written under a temporary name next to its target, flushed to disk, then renamed over the target, so a
kill at any moment leaves either the old file or the new one, never a half-written one under the final name.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
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


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> str:
    """torch.save to a temporary file of this writer's own, then rename over ``path``: readers never see a partial
    file, and two writers of one path never tear each other's."""
    import torch  # here: run.py's start-up (stale temporaries, config errors) does not pay for importing torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return os.fspath(path)
