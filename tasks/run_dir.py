"""One run folder, one run: a lock held for the run's life, what the folder held before the run, stale temporary
files of killed runs, and run folders given through the ``latest`` link.

* :func:`lock_run_dir` takes ``<run dir>/.lock`` (``fcntl.flock``, released by the kernel when the process ends)
  and writes its holder in it (pid, host, SLURM job id). A second run in the folder stops with one line naming the
  folder and the holder. The lock belongs to a job: a SLURM requeue of the same job id, or a holder that is dead
  (same host, no such pid) while its lock is still held (a lock of a stale NFS client, an orphaned child), takes
  it over.
* :class:`RecordRunDir` (a Hydra callback, ``hydra.callbacks`` in conf/config.yaml) runs before Hydra creates the
  folder and writes ``.hydra/``: it records what the folder already held (so a start-up error removes only what
  this run created: :func:`created_by_this_run`) and takes the lock (so a second run does not overwrite the
  first's ``.hydra/``).
* :func:`resolve_link_overrides` turns ``hydra.run.dir=<...>/latest`` into the real folder it points at.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("condsynth")

LOCK_NAME = ".lock"
#: what each run folder's record holds: path -> the entry names it held before this run (None: it did not exist)
_BEFORE: dict[str, frozenset[str] | None] = {}
#: run folders this process holds the lock of: path -> the open lock file
_HELD: dict[str, Any] = {}


class RunDirBusy(ValueError):
    """Another live run holds this run folder."""


def _key(run_dir: str | os.PathLike) -> str:
    return os.path.realpath(os.fspath(run_dir))


def is_rank_zero() -> bool:
    """The process that owns the run folder: global rank 0 (DDP children and other SLURM tasks share the folder)."""
    return all(os.environ.get(var, "0") == "0" for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def holder_record() -> dict[str, Any]:
    """Who holds a lock: this process, its host and its SLURM job (array jobs: ``<array job>_<task>``)."""
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    return {"pid": os.getpid(), "host": socket.gethostname(), "slurm_job_id": job, "since": time.time()}


def read_holder(run_dir: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(os.path.join(os.fspath(run_dir), LOCK_NAME)) as f:
            return json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "another process (no holder recorded)"
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder['pid']} on {holder.get('host', '?')}{job}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _may_take_over(holder: dict[str, Any]) -> str | None:
    """Why a held lock may be taken over (None: it may not): the same SLURM job (a requeue), or a dead holder."""
    me = holder_record()
    if holder.get("slurm_job_id") and holder.get("slurm_job_id") == me["slurm_job_id"]:
        return f"SLURM job {me['slurm_job_id']} requeued"
    if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"]):
        return f"its holder pid {holder['pid']} is gone"
    return None


def _flock(path: str) -> Any:
    """Open ``path`` and take an exclusive non-blocking flock; the open file, or None when another holds it."""
    import fcntl

    f = open(path, "a+")  # noqa: SIM115 - held open for the run's life
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        f.close()
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return f


def lock_run_dir(run_dir: str | os.PathLike) -> bool:
    """Hold ``<run_dir>/.lock`` for this process's life (idempotent; rank 0 only). Raises :class:`RunDirBusy`
    naming the folder and the holder when another live run holds it. False where it was not taken (not rank 0, a
    filesystem without locks)."""
    key = _key(run_dir)
    if key in _HELD:
        return True
    if not is_rank_zero():
        return False
    os.makedirs(key, exist_ok=True)
    path = os.path.join(key, LOCK_NAME)
    try:
        f = _flock(path)
        if f is None:
            holder = read_holder(key)
            reason = _may_take_over(holder)
            if reason is None:
                raise RunDirBusy(
                    f"run folder {run_dir} is in use by {describe_holder(holder)}: two runs in one folder overwrite "
                    f"each other's checkpoints and logs; wait for it to end, stop it, or pick another hydra.run.dir")
            log.warning("condsynth: taking over the lock of %s (%s)", run_dir, reason)
            with contextlib.suppress(OSError):
                os.remove(path)  # the old holder keeps a lock on the unlinked file; the new file is ours
            f = _flock(path)
            if f is None:
                raise RunDirBusy(f"run folder {run_dir} is in use by {describe_holder(read_holder(key))}")
    except OSError as err:  # e.g. a filesystem without flock: run unlocked, and say so
        log.warning("condsynth: could not lock %s (%s); make sure no other run uses this folder", run_dir, err)
        return False
    f.seek(0)
    f.truncate()
    f.write(json.dumps(holder_record()))
    f.flush()
    _HELD[key] = f
    return True


def release_run_dir(run_dir: str | os.PathLike) -> None:
    f = _HELD.pop(_key(run_dir), None)
    if f is not None:
        f.close()


def record_before(run_dir: str | os.PathLike) -> None:
    """Remember what ``run_dir`` holds now, before this run writes anything (first call wins)."""
    key = _key(run_dir)
    if key not in _BEFORE:
        _BEFORE[key] = frozenset(os.listdir(key)) if os.path.isdir(key) else None


def created_by_this_run(run_dir: str | os.PathLike) -> tuple[bool, list[str]]:
    """``(folder made by this run, entries made by this run)``. Without a record (a caller that did not go through
    :class:`RecordRunDir`), entries older than this process count as someone else's."""
    key = _key(run_dir)
    names = os.listdir(key) if os.path.isdir(key) else []
    if key in _BEFORE:
        before = _BEFORE[key]
        if before is None:
            return True, names
        return False, [n for n in names if n not in before]
    started = _process_start_time()
    mine = [n for n in names if _newest_mtime(os.path.join(key, n)) >= started]
    return len(mine) == len(names), mine


def _newest_mtime(path: str) -> float:
    newest = os.lstat(path).st_mtime
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def _process_start_time() -> float:
    """When this process started (Linux: /proc/self/stat), else when this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK") - 1.0  # 1 s of slack for clock rounding
    except (OSError, ValueError, IndexError):
        return _IMPORTED


_IMPORTED = time.time()


def prepare_run_dir(run_dir: str | os.PathLike) -> list[str]:
    """At the start of a run, before anything is written: record what the folder held, take its lock, and remove
    the temporary files killed runs left in it (a kill during a checkpoint write leaks one checkpoint's size);
    returns the removed paths."""
    from datamodules.atomic_writes import remove_stale_temporaries

    record_before(run_dir)
    if not lock_run_dir(run_dir):
        return []
    removed = remove_stale_temporaries(run_dir)
    if removed:
        log.info("condsynth: removed %d temporary file(s) left by a killed run: %s", len(removed), ", ".join(removed))
    return removed


def resolve_link_overrides(argv: Sequence[str]) -> list[str]:
    """``hydra.run.dir=<link>`` (e.g. ``outputs/train/pix2pixhd_global/latest``) -> the real folder it points at,
    so a resume through the link runs in that folder (and ``latest`` is not made a link to itself)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") == "hydra.run.dir" and value and os.path.islink(value.rstrip("/")):
            real = os.path.realpath(value)
            log.debug("hydra.run.dir=%s is a link to %s", value, real)
            arg = f"{key}={real}"
        out.append(arg)
    return out


try:  # Hydra's callback base (hydra-core >= 1.1)
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[assignment,misc]


class RecordRunDir(_HydraCallback):
    """Hydra callback: before Hydra makes the run folder and writes ``.hydra/``, record what it holds and lock it
    (:func:`prepare_run_dir`); a busy folder stops here with one ``error:`` line."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        run_dir = config.hydra.run.dir
        try:
            prepare_run_dir(run_dir)
        except RunDirBusy as err:
            from tasks.cli import debug_requested, fail

            fail(err, debug_requested() or bool(config.get("debug")))
