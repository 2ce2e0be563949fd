"""run.py end to end as users call it: a training run, a multirun sweep, resume after interruption, errors."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest

from lightning_modules.checkpoints import safe_torch_load
from tests.conftest import REPO_ROOT, TINY_PIX2PIXHD

pytestmark = pytest.mark.slow


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", HYDRA_FULL_ERROR="0", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _tiny(run_dir) -> list[str]:
    # CLI quoting: the perceptual layer_weights override contains braces; keep it as one argument
    return [*TINY_PIX2PIXHD, f"hydra.run.dir={run_dir}"]


def test_train_writes_checkpoints_and_sample_grids(tmp_path) -> None:
    proc = _run(_tiny(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.isfile(tmp_path / "run" / "checkpoints" / "last.ckpt")
    samples = glob.glob(str(tmp_path / "run" / "samples" / "*.png"))
    assert samples, "no sample grids written"
    assert "samples:" in proc.stdout and "checkpoints:" in proc.stdout
    assert os.path.isfile(tmp_path / "run" / "csv" / "metrics.csv")
    # no warning a normal run could have prevented (Lightning's eval-mode note, tips, srun, deprecations)
    noisy = [line for line in proc.stderr.splitlines()
             if re.search(r"warn|Tip:|module\(s\) in eval mode|LeafSpec|srun", line, re.IGNORECASE)]
    assert not noisy, noisy


def test_multirun_sweep_two_values(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    args = [a for a in _tiny(tmp_path / "unused") if not a.startswith("hydra.run.dir")]
    proc = _run(["-m", *args, "model.optimizer.lr=1e-4,2e-4", f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert os.path.isfile(sweep / job / "checkpoints" / "last.ckpt"), os.listdir(sweep)
    lrs = []
    for job in ("0", "1"):
        ckpt = safe_torch_load(sweep / job / "checkpoints" / "last.ckpt")
        lrs.append(ckpt["optimizer_states"][0]["param_groups"][0]["initial_lr"])
    assert sorted(lrs) == [1e-4, 2e-4]


def test_resume_continues_at_the_same_step(tmp_path) -> None:
    run_dir = tmp_path / "run"
    first = _run(_tiny(run_dir))
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = safe_torch_load(run_dir / "checkpoints" / "last.ckpt")
    step1, epoch1 = ckpt["global_step"], ckpt["epoch"]
    assert step1 == 4  # 2 batches x (D step + G step)
    second = _run([*_tiny(run_dir), "ckpt_path=last", "trainer.max_epochs=2"])
    assert second.returncode == 0, second.stderr[-3000:]
    ckpt2 = safe_torch_load(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt2["global_step"] == 2 * step1 and ckpt2["epoch"] == epoch1 + 1
    # the optimizer state continued (Adam's step counter) rather than restarting
    adam_steps = [s["step"] for s in ckpt2["optimizer_states"][0]["state"].values()]
    assert float(adam_steps[0]) == 4.0


def test_local_stage_without_checkpoint_fails_before_training(tmp_path) -> None:
    proc = _run([*_tiny(tmp_path / "run"), "stage=local"])
    assert proc.returncode != 0
    assert "stage.init_from" in proc.stderr and "stage=global" in proc.stderr
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_summary_prints_every_subnetwork(tmp_path) -> None:
    proc = _run([*_tiny(tmp_path / "run"), "task=summary", "stage=local"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("netG", "netD", "netE", "objective.perceptual.vgg", "LocalEnhancer"):
        assert name in proc.stdout
    assert "1x12x32x32 -> 1x3x32x32" in proc.stdout  # 8 labels + boundary + 3 features -> RGB


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_ddp_two_cpu_processes(tmp_path, strategy: str) -> None:
    """2 processes (gloo), started by Lightning as subprocesses (ddp) or spawned (ddp_spawn): the manual D/G steps
    run under DDP; rank 0 alone writes files."""
    run_dir = tmp_path / "run"
    proc = _run([*_tiny(run_dir), "trainer.accelerator=cpu", "trainer.devices=2", f"strategy={strategy}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = safe_torch_load(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 4  # 2 batches per rank x (D + G)
    assert proc.stdout.count("condsynth: finished") == 1  # the summary is printed by rank 0 only
    assert "world_size=2" in proc.stderr or "distributed_backend=gloo" in proc.stderr
