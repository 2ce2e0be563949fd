"""Against a real SLURM cluster (tests/cluster/conftest.py): a `-m` sweep of 2-task DDP jobs, and preemption.

Each job is a 2-process DDP training on the CPU (gloo); SLURM starts the two tasks and Lightning takes their ranks.
The preemption test sends the job SIGUSR2 (what SLURM sends `signal_delay_s` before the time limit) mid-run: the
job saves its state, submitit requeues it, and the requeued job must continue from the same global step with the
same optimizer state.
"""

from __future__ import annotations

import csv
import glob
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT, TINY_PIX2PIXHD

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

JOB_TIMEOUT_S = 900  # the launcher waits for every job; generous for a loaded 2-core CI machine


def _env() -> dict[str, str]:
    env = dict(os.environ, WANDB_MODE="offline", HYDRA_FULL_ERROR="1", OMP_NUM_THREADS="1")
    env.pop("WANDB_SERVICE", None)  # jobs must not talk to a W&B service of this pytest process
    return env


def _slurm_args(partition: str, sweep: Path) -> list[str]:
    return [
        "-m",
        *TINY_PIX2PIXHD,
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={partition}",
        "hydra.launcher.cpus_per_task=1",  # 2 tasks x 1 CPU: the whole 2-core node
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=30",
        f"hydra.sweep.dir={sweep}",
        "trainer.accelerator=cpu",
        "trainer.devices=2",  # -> tasks_per_node=2
        "strategy=ddp",
    ]


def _job_logs(sweep: Path, tail: int = 4000) -> str:
    """Every task's stdout/stderr from the submitit folder, and the queue, for failure messages."""
    parts = []
    for f in sorted(glob.glob(str(sweep / ".submitit" / "*" / "*_log.*"))):
        text = Path(f).read_text(errors="replace")
        parts.append(f"----- {f} -----\n{text[-tail:]}")
    for cmd in (["squeue"], ["sinfo"]):
        try:
            parts.append(f"----- {' '.join(cmd)} -----\n" + subprocess.run(cmd, capture_output=True, text=True,
                                                                              timeout=10).stdout)
        except Exception as err:  # noqa: BLE001 - diagnostics only
            parts.append(f"{cmd}: {err}")
    return "\n".join(parts) or f"(no submitit logs under {sweep / '.submitit'})"


def _job_ids(sweep: Path) -> list[str]:
    """SLURM ids of the submitted jobs ("12" or array tasks "12_0", "12_1"): folders holding a submitted pickle."""
    return sorted(p.parent.name for p in (sweep / ".submitit").glob("*/*_submitted.pkl"))


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _csv_train_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss_G")]


def test_sweep_of_two_ddp_jobs(slurm_cluster: str, tmp_path: Path) -> None:
    """`-m` with 2 values: 2 SLURM jobs (an array), each 2 tasks = one 2-rank DDP training, each in its own subdir."""
    sweep = tmp_path / "sweep"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "run.py", *_slurm_args(slurm_cluster, sweep), "model.optimizer.lr=1e-4,2e-4"],
                          cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    wall = time.monotonic() - start
    print(f"\nSLURM sweep of 2 DDP jobs: {wall:.1f} s wall")
    assert proc.returncode == 0, f"{proc.stderr[-3000:]}\n{_job_logs(sweep)}"

    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    for flag in ("--ntasks-per-node=2", "--nodes=1", "--signal=USR2@", "--requeue", "--partition=debug"):
        assert flag in script, f"{flag} missing from the sbatch script:\n{script}"
    assert len(_job_ids(sweep)) == 2, _job_ids(sweep)

    lrs = []
    for job in ("0", "1"):
        run_dir = sweep / job
        assert (run_dir / "checkpoints" / "last.ckpt").is_file(), f"job {job}: {os.listdir(run_dir)}\n{_job_logs(sweep)}"
        ckpt = _ckpt(run_dir / "checkpoints" / "last.ckpt")
        assert ckpt["global_step"] == 4, "2 batches per rank x (D step + G step)"
        lrs.append(ckpt["optimizer_states"][0]["param_groups"][0]["initial_lr"])
        assert glob.glob(str(run_dir / "samples" / "*.png")), f"job {job} wrote no sample grid"
        assert _csv_train_steps(run_dir) == [0, 1]
    assert sorted(lrs) == [1e-4, 2e-4]

    # each job: 2 tasks, 2 DDP ranks from SLURM; the summary printed by rank 0 only
    for job_id in _job_ids(sweep):
        folder = sweep / ".submitit" / job_id
        errs = [(folder / f"{job_id}_{t}_log.err").read_text() for t in (0, 1)]
        outs = [(folder / f"{job_id}_{t}_log.out").read_text() for t in (0, 1)]
        assert "MEMBER: 1/2" in errs[0] and "MEMBER: 2/2" in errs[1], _job_logs(sweep)
        assert "condsynth: finished" in outs[0] and "condsynth: finished" not in outs[1]
        # one requeue mechanism: Lightning's own SLURM auto-requeue is off (submitit's handles the signal)
        assert "SLURM auto-requeueing enabled" not in errs[0] + errs[1]


_PREEMPTED = re.compile(r"preempted \(SIGUSR2\) at step \d+ \(epoch (\d+); Lightning global step (\d+); "
                        r"optimizer steps \[(\d+), (\d+)\]\)")
_STARTS = re.compile(r"training starts at step \d+ \(epoch (\d+); Lightning global step (\d+)\)"
                     r"(?:; restored optimizer steps \[(-?\d+), (-?\d+)\])?(; SLURM restart (\d+))?")


def test_preempted_job_is_requeued_and_resumes_at_the_same_step(slurm_cluster: str, tmp_path: Path) -> None:
    """SIGUSR2 mid-run (as SLURM sends before the time limit, or `scancel --signal=USR2`): the job checkpoints at a
    batch boundary, submitit requeues it, and the requeued job resumes at that global step and optimizer state."""
    sweep = tmp_path / "sweep"
    epochs, batches = 30, 4  # 16 samples / 2 ranks / batch 1, 4 batches per epoch: 120 batches, 240 optimizer steps
    args = [*_slurm_args(slurm_cluster, sweep), "model.optimizer.lr=2e-4", "dataset.num_train=16",
            f"trainer.limit_train_batches={batches}", f"trainer.max_epochs={epochs}",
            "callbacks.sample_grid.every_n_steps=1000", "hydra.launcher.max_num_timeout=2"]
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "run.py", *args], cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        last = sweep / "0" / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 600
        while not last.exists():  # the first epoch is done: training is under way
            assert proc.poll() is None, f"the sweep ended before training started:\n{proc.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, f"no checkpoint after 600 s\n{_job_logs(sweep)}"
            time.sleep(0.2)
        (job_id,) = _job_ids(sweep)
        signal_at = time.monotonic() - start
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
        out, _ = proc.communicate(timeout=JOB_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", *_job_ids(sweep)], timeout=30)
    wall = time.monotonic() - start
    assert proc.returncode == 0, f"{out[-3000:]}\n{_job_logs(sweep)}"

    log_text = (sweep / "0" / "run.log").read_text()
    preempted = [(int(m[1]), int(m[0]), int(m[2]), int(m[3])) for m in _PREEMPTED.findall(log_text)]
    starts = [(int(m[1]), int(m[0]), int(m[2] or -1), int(m[3] or -1), int(m[5] or 0))
              for m in _STARTS.findall(log_text)]
    assert len(preempted) == 1 and len(starts) == 2, f"{log_text[-4000:]}\n{_job_logs(sweep)}"
    step, epoch, opt_g, opt_d = preempted[0]
    assert starts[0] == (0, 0, -1, -1, 0), "the first run starts fresh"
    assert 0 < step < 2 * epochs * batches, "preempted mid-run"
    # the requeued run (SLURM restart 1) starts at the preempted step, with the optimizer state it had there;
    # a signal caught on an epoch's last batch resumes at the start of the next epoch (same global step)
    resume_epoch = epoch + 1 if step % (2 * batches) == 0 else epoch
    assert starts[1] == (step, resume_epoch, opt_g, opt_d, 1), (preempted, starts)
    assert opt_g == opt_d == step // 2, "Adam's step counters: one D and one G step per batch"

    final = _ckpt(sweep / "0" / "checkpoints" / "last.ckpt")
    assert final["global_step"] == 2 * epochs * batches
    adam_steps = {int(s["step"]) for s in final["optimizer_states"][0]["state"].values()}
    assert adam_steps == {epochs * batches}, "the optimizer continued counting from its saved state"
    # the CSV log continues: every batch logged exactly once across both runs, no restart from 0
    steps = _csv_train_steps(sweep / "0")
    assert steps == list(range(epochs * batches)), steps
    restarts = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
    assert "Restarts=1" in restarts or not restarts.strip(), restarts
    print(f"\nSLURM preemption: SIGUSR2 at {signal_at:.1f} s, preempted at global step {step} (epoch {epoch}, "
          f"Adam steps G={opt_g} D={opt_d}); requeued run started at global step {starts[1][0]} (Adam steps "
          f"G={starts[1][2]} D={starts[1][3]}), finished at {final['global_step']}; {wall:.1f} s wall")
