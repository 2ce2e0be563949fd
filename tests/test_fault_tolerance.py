"""Fault tolerance and scale-out without a cluster: kill -9 and resume, truncated checkpoints, atomic writes, the W&B
run id across restarts, a signal-triggered checkpoint, reproducibility, submitit_local sweeps, DDP in a stage that
freezes parts. The SLURM side (requeue on preemption, sweeps of DDP jobs) is in tests/cluster/."""

from __future__ import annotations

import csv
import glob
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from datamodules.atomic_writes import atomic_torch_save
from lightning_modules.checkpoints import safe_torch_load
from tasks.resume import resolve_resume_path
from tasks.run_logs import WANDB_ID_FILE
from tasks.train import train
from tests.conftest import REPO_ROOT, TINY_PIX2PIXHD

pytestmark = pytest.mark.slow

@pytest.fixture(autouse=True)
def _one_torch_thread():
    """In-process trainings here use one thread: on a shared 2-core machine two OpenMP threads per process can be 10x
    slower (the subprocesses get OMP_NUM_THREADS=1 for the same reason)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


_STARTS = re.compile(r"training starts at step (\d+) \(epoch (\d+); Lightning global step (\d+)\); "
                     r"restored optimizer steps \[(-?\d+), (-?\d+)\]")


def _env() -> dict[str, str]:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HYDRA_FULL_ERROR="1", OMP_NUM_THREADS="1")
    # a W&B run earlier in this pytest process leaves WANDB_SERVICE pointing at its service: children would share
    # it, and the killed run's stream would still hold the run id there ("run ID ... is in use")
    env.pop("WANDB_SERVICE", None)
    return env


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _ckpt(path: os.PathLike) -> dict:
    return safe_torch_load(str(path))  # the project's one safe read, as every checkpoint read


def _signal_after_first_checkpoint(args: list[str], run_dir: Path, signum: int,
                                   settle_s: float = 0.0) -> tuple[int, str]:
    """Start ``run.py args``, wait for its first checkpoints/last.ckpt, wait ``settle_s`` more (into the next
    epoch), send ``signum``; returns the exit code and the output."""
    proc = subprocess.Popen([sys.executable, "run.py", *args], cwd=REPO_ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoints" / "last.ckpt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "training did not get going"
            time.sleep(0.05)
        time.sleep(settle_s)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out


def _csv_rows(run_dir: os.PathLike) -> list[dict[str, str]]:
    with open(Path(run_dir) / "csv" / "metrics.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("train/loss_G")]


def test_kill9_mid_run_then_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    """SIGKILL mid-epoch, then the same command with ckpt_path=last: training continues from checkpoints/last.ckpt
    (complete: writes are atomic), the CSV log has every batch exactly once, and W&B continues the same run id."""
    run_dir = tmp_path / "run"
    epochs, batches = 10, 6
    args = [*TINY_PIX2PIXHD, f"hydra.run.dir={run_dir}", "logger=all", "dataset.num_train=6",
            f"trainer.limit_train_batches={batches}", f"trainer.max_epochs={epochs}",
            "callbacks.sample_grid.every_n_steps=1000", "trainer.enable_progress_bar=false"]
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "run.py", *args], cwd=REPO_ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not last.exists():
            assert proc.poll() is None, f"training ended before its first checkpoint:\n{proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.05)
        time.sleep(0.3)  # into the next epoch
        assert proc.poll() is None, "training finished before it could be killed: make it longer"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    saved = _ckpt(last)  # complete and loadable, whatever the kill interrupted
    saved_step = saved["global_step"]
    assert 0 < saved_step < 2 * epochs * batches

    second = _run([*args, "ckpt_path=last"])
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-3000:]
    assert f"resuming from {last}" in output
    starts = _STARTS.findall(output)
    # the project's step counts batches, Lightning's global step optimizer steps (2 per batch for a GAN)
    assert starts and int(starts[0][2]) == saved_step and int(starts[0][0]) == saved_step // 2, starts
    assert int(starts[0][3]) == int(starts[0][4]) == saved_step // 2, "Adam state restored with the weights"
    final = _ckpt(last)
    assert final["global_step"] == 2 * epochs * batches
    # every batch logged exactly once: the rows logged between the checkpoint and the kill were replaced
    steps = [int(r["step"]) for r in _csv_rows(run_dir)]
    assert steps == list(range(epochs * batches)), steps

    # W&B: one run id, stored in the run dir on the first start and reused by the resume
    run_id = (run_dir / WANDB_ID_FILE).read_text().strip()
    runs = sorted(glob.glob(str(run_dir / "wandb" / "offline-run-*")))
    assert len(runs) == 2, runs
    assert all(r.endswith(f"-{run_id}") for r in runs), (run_id, runs)


def test_truncated_last_checkpoint_falls_back_to_the_previous_one(make_config, tmp_path: Path, caplog) -> None:
    run_dir = tmp_path / "run"
    common = ["callbacks.model_checkpoint.every_n_epochs=2", "callbacks.sample_grid.every_n_steps=1000"]
    pl.seed_everything(0)
    train(make_config(*common, "trainer.max_epochs=3", run_dir=run_dir))
    ckpt_dir = run_dir / "checkpoints"
    keeper = ckpt_dir / "epoch0001-step0000004.ckpt"  # step: batches (4), not Lightning's 8 optimizer steps
    assert keeper.is_file(), os.listdir(ckpt_dir)
    assert _ckpt(ckpt_dir / "last.ckpt")["global_step"] == 12
    # a crash mid-write of a non-atomic writer (or a bad disk): last.ckpt cut in half; a stale temporary file too
    data = (ckpt_dir / "last.ckpt").read_bytes()
    (ckpt_dir / "last.ckpt").write_bytes(data[: len(data) // 2])
    (ckpt_dir / "last.ckpt.tmp").write_bytes(data[:100])
    time.sleep(0.01)
    os.utime(keeper)

    cfg = make_config(*common, "trainer.max_epochs=4", "ckpt_path=last", run_dir=run_dir)
    with caplog.at_level(logging.WARNING):
        assert resolve_resume_path(cfg) == str(keeper)
    assert "unreadable (truncated?)" in caplog.text and keeper.name in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(cfg)
    assert "training starts at step 4 (epoch 2; Lightning global step 8)" in caplog.text
    assert _ckpt(ckpt_dir / "last.ckpt")["global_step"] == 16


def test_atomic_checkpoint_write_survives_a_crash_mid_write(tmp_path: Path, monkeypatch) -> None:
    path = str(tmp_path / "last.ckpt")
    atomic_torch_save({"global_step": 1}, path)

    def dying_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("killed mid-write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        atomic_torch_save({"global_step": 2}, path)
    monkeypatch.undo()
    assert _ckpt(path)["global_step"] == 1  # the previous checkpoint is intact


def test_usr2_saves_at_a_batch_boundary_and_stops(tmp_path: Path) -> None:
    """Outside SLURM the preemption signal saves checkpoints/last.ckpt at the end of the current batch and stops;
    ckpt_path=last continues from exactly there."""
    run_dir = tmp_path / "run"
    args = [*TINY_PIX2PIXHD, f"hydra.run.dir={run_dir}", "dataset.num_train=8", "trainer.limit_train_batches=8",
            "trainer.max_epochs=20", "callbacks.sample_grid.every_n_steps=1000"]
    returncode, out = _signal_after_first_checkpoint(args, run_dir, signal.SIGUSR2)
    assert returncode == 3, out[-3000:]
    m = re.search(r"preempted \(SIGUSR2\) at step (\d+) \(epoch \d+; Lightning global step (\d+); "
                  r"optimizer steps \[(\d+), (\d+)\]\)", out)
    assert m, out[-3000:]
    assert int(m.group(1)) * 2 == int(m.group(2)), "a step is one batch: a D and a G optimizer step"
    step = int(m.group(2))
    saved = _ckpt(run_dir / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == step and step % 2 == 0 and 0 < step < 320
    assert {int(s["step"]) for s in saved["optimizer_states"][0]["state"].values()} == {step // 2}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_save_the_current_step_and_exit_non_zero(tmp_path: Path, signum: int, code: int) -> None:
    """Ctrl-C or kill mid-epoch: checkpoints/last.ckpt at the current step (not the last epoch's), exit 130/143,
    and ckpt_path=last continues from that step."""
    run_dir = tmp_path / "run"
    args = [*TINY_PIX2PIXHD, f"hydra.run.dir={run_dir}", "dataset.num_train=8", "trainer.limit_train_batches=8",
            "trainer.max_epochs=20", "callbacks.sample_grid.every_n_steps=1000", "trainer.limit_val_batches=0"]
    returncode, out = _signal_after_first_checkpoint(args, run_dir, signum, settle_s=0.5)  # into the next epoch
    assert returncode == code, out[-3000:]
    m = re.search(rf"interrupted \({signal.Signals(signum).name}\) at step (\d+)", out)
    assert m, out[-3000:]
    step = int(m.group(1))
    saved = _ckpt(run_dir / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == 2 * step and step >= 8, "saved at the current step"
    second = _run([*args, "ckpt_path=last", f"trainer.max_steps={step + 1}"])
    assert second.returncode == 0, second.stderr[-3000:]
    starts = _STARTS.findall(second.stdout + second.stderr)
    assert starts and int(starts[0][2]) == 2 * step, (starts, (second.stdout + second.stderr)[-2500:])


def _first_losses(make_config, run_dir: Path, seed: int, n: int = 3) -> list[tuple[float, float]]:
    cfg = make_config(f"seed={seed}", f"trainer.limit_train_batches={n}", "dataset.num_train=4",
                      "callbacks.sample_grid.every_n_steps=1000", run_dir=run_dir)
    pl.seed_everything(int(cfg.seed), workers=True)  # as run.py does
    train(cfg)
    rows = _csv_rows(run_dir)[:n]
    return [(float(r["train/loss_D"]), float(r["train/loss_G"])) for r in rows]


def test_same_seed_gives_the_same_first_losses(make_config, tmp_path: Path) -> None:
    a = _first_losses(make_config, tmp_path / "a", seed=42)
    b = _first_losses(make_config, tmp_path / "b", seed=42)
    c = _first_losses(make_config, tmp_path / "c", seed=7)
    assert len(a) == 3
    assert a == b, f"seed 42 twice: {a} vs {b}"
    assert a != c


def test_submitit_local_sweep_without_a_cluster(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = _run(["-m", *TINY_PIX2PIXHD, "hydra/launcher=local", f"hydra.sweep.dir={sweep}",
                 "model.optimizer.lr=1e-4,2e-4"], timeout=600)
    logs = "\n".join(Path(f).read_text()[-2000:] for f in glob.glob(str(sweep / ".submitit" / "*" / "*_log.*")))
    assert proc.returncode == 0, f"{proc.stderr[-3000:]}\n{logs}"
    lrs = []
    for job in ("0", "1"):
        ckpt = _ckpt(sweep / job / "checkpoints" / "last.ckpt")
        assert ckpt["global_step"] == 4
        lrs.append(ckpt["optimizer_states"][0]["param_groups"][0]["initial_lr"])
        assert (sweep / job / "csv" / "metrics.csv").is_file()
    assert sorted(lrs) == [1e-4, 2e-4]
    assert len(glob.glob(str(sweep / ".submitit" / "*" / "*_result.pkl"))) == 2


def test_ddp_local_stage_with_frozen_global_generator(make_config, tmp_path: Path) -> None:
    """Stage local under 2-process DDP: G1 frozen (requires_grad False), D/G steps toggle parameters; no
    unused-parameter error, G1 unchanged, every trainable parameter stepped, one checkpoint written by rank 0."""
    train(make_config("trainer.limit_train_batches=1", run_dir=tmp_path / "global"))
    init = tmp_path / "global" / "checkpoints" / "last.ckpt"
    run_dir = tmp_path / "local"
    proc = _run([*TINY_PIX2PIXHD, f"hydra.run.dir={run_dir}", "stage=local", f"stage.init_from={init}",
                 "trainer.accelerator=cpu", "trainer.devices=2", "strategy=ddp"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stderr
    before = _ckpt(init)["state_dict"]
    after = _ckpt(run_dir / "checkpoints" / "last.ckpt")
    assert after["global_step"] == 4
    state = after["state_dict"]
    g1 = [k for k in state if k.startswith("netG.global_body.")]
    assert g1
    for k in g1:
        assert torch.equal(state[k], before[k.replace("netG.global_body.", "netG.body.")]), f"{k} changed"
    # every trainable parameter (G2, E; D) got a gradient and an optimizer step on both ranks' data
    for opt in after["optimizer_states"]:
        assert len(opt["state"]) == len(opt["param_groups"][0]["params"])
        assert {int(s["step"]) for s in opt["state"].values()} == {2}


def test_ddp_lst_transform_stage_with_frozen_encoder_and_decoder(tmp_path: Path) -> None:
    """LST stage transform under 2-process DDP (no discriminator, automatic optimization): encoder, decoder and the
    loss network are frozen, only the transformation trains; no unused-parameter error, the frozen parts unchanged,
    every transform parameter stepped once per batch, validation metrics synced across ranks."""
    from tests.conftest import TINY_LST

    lst = [*TINY_LST, "model.level=r31", "dataset.num_train=8"]  # 2 batches of 2 per rank
    dec_dir, run_dir = tmp_path / "decoder", tmp_path / "transform"
    first = _run([*lst, f"hydra.run.dir={dec_dir}", "trainer.limit_train_batches=1"])
    assert first.returncode == 0, first.stderr[-3000:]
    init = dec_dir / "checkpoints" / "last.ckpt"
    proc = _run([*lst, f"hydra.run.dir={run_dir}", "stage=transform", f"stage.init_from={init}",
                 "trainer.accelerator=cpu", "trainer.devices=2", "strategy=ddp"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stderr
    before, after = _ckpt(init), _ckpt(run_dir / "checkpoints" / "last.ckpt")
    assert after["global_step"] == 2  # 2 batches per rank, one optimizer
    frozen = [k for k in after["state_dict"] if k.startswith(("encoder.", "decoder."))]
    assert frozen and all(torch.equal(after["state_dict"][k], before["state_dict"][k]) for k in frozen)
    changed = [k for k in after["state_dict"] if k.startswith("transform.")
               and not torch.equal(after["state_dict"][k], before["state_dict"][k])]
    assert changed  # the transformation trained
    (opt,) = after["optimizer_states"]
    assert len(opt["state"]) == len(opt["param_groups"][0]["params"])
    assert {int(s["step"]) for s in opt["state"].values()} == {2}
    assert proc.stdout.count("condsynth: finished") == 1


@pytest.mark.parametrize("max_steps", [-1, 9], ids=["epochs", "max_steps"])
def test_resume_from_an_epoch_end_checkpoint_matches_an_uninterrupted_run(make_config, tmp_path: Path,
                                                                          max_steps: int) -> None:
    """Stopped after an epoch and resumed, a run reaches the same step count and writes the same metrics rows, value
    for value, as one that ran through: with trainer.max_steps (iteration-based) Lightning's restore once trained a
    batch too many of the old epoch and ended an epoch early; the random state continues too."""
    common = ["trainer.limit_train_batches=3", "dataset.num_train=6", "callbacks.sample_grid.every_n_steps=1000",
              "trainer.limit_val_batches=0", f"trainer.max_steps={max_steps}"]
    pl.seed_everything(0)
    train(make_config(*common, "trainer.max_epochs=3", run_dir=tmp_path / "full"))
    pl.seed_everything(0)
    train(make_config(*common, "trainer.max_epochs=1", run_dir=tmp_path / "part"))
    pl.seed_everything(0)  # as run.py does (cfg.seed); the random state since then comes from the checkpoint
    train(make_config(*common, "trainer.max_epochs=3", "ckpt_path=last", run_dir=tmp_path / "part"))
    full = [(r["step"], r["train/loss_G"]) for r in _csv_rows(tmp_path / "full")]
    resumed = [(r["step"], r["train/loss_G"]) for r in _csv_rows(tmp_path / "part")]
    assert [s for s, _ in full] == [str(i) for i in range(9)]
    assert resumed == full
    assert _ckpt(tmp_path / "part" / "checkpoints" / "last.ckpt")["global_step"] == 18


def test_disk_full_during_a_checkpoint_save_is_one_line_naming_the_folder(tmp_path: Path, monkeypatch) -> None:
    """Issue 16 §5: a full disk ended in torch's ``inline_container.cc ... unexpected pos``; now one line naming the
    folder, the space needed and the free space, and the previous checkpoint is kept."""
    import builtins
    import errno

    from datamodules import atomic_writes
    from tasks.cli import USER_ERRORS

    path = str(tmp_path / "last.ckpt")
    atomic_torch_save({"global_step": 1}, path)

    class FullDisk:
        """A file whose writes fail with ENOSPC after 1 kB, as a full disk does."""

        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 1024:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    real_open = builtins.open
    monkeypatch.setattr(atomic_writes, "open", lambda p, mode="r", *a, **k: FullDisk(real_open(p, mode, *a, **k))
                        if "w" in mode else real_open(p, mode, *a, **k), raising=False)
    with pytest.raises(atomic_writes.DiskFullError) as err:
        atomic_torch_save({"global_step": 2, "weights": torch.zeros(256, 1024)}, path)
    monkeypatch.undo()
    message = str(err.value)
    assert isinstance(err.value, USER_ERRORS) and "\n" not in message
    assert f"no space left on the device of {tmp_path} writing last.ckpt: it needs about 1.0 MB" in message
    assert "is free" in message and "inline_container" not in message
    assert _ckpt(path)["global_step"] == 1  # the previous checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left
