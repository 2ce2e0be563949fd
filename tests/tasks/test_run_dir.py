"""One run folder, one run: unique temporary names, the run-folder lock, stale temporaries, start-up errors that
remove only what the run created, and run folders given through the ``latest`` link."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from datamodules.atomic_writes import atomic_torch_save, temporary_path
from tasks import run_dir as rd
from tasks.cli import remove_unused_run_dir
from tests.conftest import REPO_ROOT


@pytest.fixture(autouse=True)
def _fresh_records() -> Iterator[None]:
    yield
    for key in list(rd._HELD):
        rd.release_run_dir(key)
    rd._BEFORE.clear()


def test_two_writers_racing_on_one_checkpoint_never_tear_it(tmp_path: Path) -> None:
    """Two writers (threads of one process: one pid, so the random part of the name matters) save one path over and
    over while a reader loads it: every save succeeds and every read is a complete checkpoint of one writer."""
    path = str(tmp_path / "last.ckpt")
    atomic_torch_save({"writer": -1, "data": torch.zeros(1)}, path)
    errors: list[BaseException] = []
    done = threading.Event()

    def write(writer: int) -> None:
        try:
            for i in range(25):
                atomic_torch_save({"writer": writer, "i": i, "data": torch.full((64, 1024), float(writer))}, path)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    reads = []

    def read() -> None:
        while not done.is_set():
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
            except BaseException as err:  # noqa: BLE001 - a torn file
                errors.append(err)
                return
            data = ckpt["data"]
            assert ckpt["writer"] == -1 or bool((data == ckpt["writer"]).all()), "mixed content"
            reads.append(ckpt["writer"])

    writers = [threading.Thread(target=write, args=(w,)) for w in (1, 2)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()
    assert not errors, errors[:3]
    assert len(reads) > 5
    assert not [p for p in os.listdir(tmp_path) if p != "last.ckpt"], "temporary files left behind"


def test_temporary_names_differ_per_writer() -> None:
    assert temporary_path("/r/last.ckpt") != temporary_path("/r/last.ckpt")
    assert temporary_path("/r/x.png", keep_extension=True).endswith(".png")


_HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from tasks import run_dir as rd
rd.lock_run_dir({folder!r})
if {fake_pid}:
    open({folder!r} + '/.lock', 'w').write('{{"pid": {fake_pid}, "host": "' + rd.holder_record()['host'] + '"}}')
print('held', flush=True)
time.sleep(60)
"""


def _hold(folder: Path, env: dict[str, str] | None = None, fake_pid: int = 0) -> subprocess.Popen:
    code = _HOLD.format(root=REPO_ROOT, folder=str(folder), fake_pid=fake_pid)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_in_a_held_folder_stops_naming_the_folder_and_the_holder(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    folder = tmp_path / "run"
    holder = _hold(folder, {"SLURM_JOB_ID": "41"})
    try:
        with pytest.raises(rd.RunDirBusy) as err:
            rd.lock_run_dir(folder)
        message = str(err.value)
        assert str(folder) in message and f"pid {holder.pid}" in message and "SLURM job 41" in message
        assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    assert rd.lock_run_dir(folder), "a holder that ended releases the folder"
    assert rd.read_holder(folder)["pid"] == os.getpid()


def test_a_requeue_of_the_same_slurm_job_takes_the_lock_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "run"
    holder = _hold(folder, {"SLURM_JOB_ID": "41"})
    try:
        monkeypatch.setenv("SLURM_JOB_ID", "41")
        assert rd.lock_run_dir(folder)
        assert rd.read_holder(folder)["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_holder_is_taken_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock is still held (an orphaned child keeps the file open) but the recorded holder is gone."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    folder = tmp_path / "run"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = _hold(folder, fake_pid=int(dead.stdout))
    try:
        assert rd.lock_run_dir(folder)
    finally:
        holder.kill()
        holder.wait()


def test_start_removes_stale_temporaries_and_keeps_the_users_files(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "samples").mkdir()
    stale = [folder / "checkpoints" / "last.ckpt.4242.0a1b2c3d.tmp", folder / "checkpoints" / "epoch1.ckpt.tmp",
             folder / "samples" / ".step_000010.4242.deadbeef.partial.png"]
    kept = [folder / "checkpoints" / "last.ckpt", folder / "notes.tmp", folder / "samples" / "step_000010.png"]
    for p in stale + kept:
        p.write_bytes(b"x" * 10)
    removed = rd.prepare_run_dir(folder)
    assert sorted(removed) == sorted(map(str, stale))
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_a_start_up_error_removes_only_what_the_run_created(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.log").write_text("my notes")
    rd.prepare_run_dir(folder)  # what RecordRunDir does before Hydra writes
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("x: 1")
    (folder / "train.log").write_text("started")
    assert remove_unused_run_dir(folder) is False  # the folder stays
    assert sorted(os.listdir(folder)) == ["notes.log"]

    fresh = tmp_path / "fresh"
    rd.prepare_run_dir(fresh)
    (fresh / ".hydra").mkdir()
    (fresh / "train.log").write_text("started")
    assert remove_unused_run_dir(fresh) is True and not fresh.exists()


def test_without_a_record_older_files_count_as_the_users(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.log").write_text("my notes")
    old = time.time() - 3600
    os.utime(folder / "notes.log", (old, old))
    (folder / ".hydra").mkdir()
    assert remove_unused_run_dir(folder) is False
    assert os.listdir(folder) == ["notes.log"]


def test_a_run_dir_given_through_the_latest_link_is_the_real_folder(tmp_path: Path) -> None:
    real = tmp_path / "train" / "m_s" / "2026-01-01_00-00-00"
    real.mkdir(parents=True)
    (real.parent / "latest").symlink_to(real.name)
    args = rd.resolve_link_overrides([f"hydra.run.dir={real.parent / 'latest'}", "ckpt_path=last"])
    assert args == [f"hydra.run.dir={real}", "ckpt_path=last"]
    assert rd.resolve_link_overrides(["hydra.run.dir=/not/a/link"]) == ["hydra.run.dir=/not/a/link"]
