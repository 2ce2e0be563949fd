"""One meaning of "step" (docs/configuration.md, notes): a training batch, for a GAN too.

Lightning's global_step counts optimizer steps (two per GAN batch: G and D). ``trainer.max_steps``, the CSV step
axis, sample grid and checkpoint names and the finish line all count batches."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl

from lightning_modules.checkpoints import safe_torch_load
from tasks.train import train

pytestmark = pytest.mark.slow


def test_max_steps_counts_batches_for_a_gan(make_config, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    pl.seed_everything(0)
    cfg = make_config("trainer.max_steps=3", "trainer.max_epochs=10", "dataset.num_train=2",
                      "callbacks.sample_grid.every_n_steps=2", "callbacks.model_checkpoint.every_n_epochs=1",
                      "trainer.log_every_n_steps=1", run_dir=run_dir)
    train(cfg)
    # 3 batches = 6 optimizer steps (G and D each 3)
    last = safe_torch_load(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 6
    assert {int(s["step"]) for s in last["optimizer_states"][0]["state"].values()} == {3}
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss_G")]
    assert steps == [0, 1, 2]
    # grids after batches 0 and 2 carry their rows' steps; the keeper after epoch 0 (2 batches) is named by batches
    assert {"step_000000.png", "step_000002.png"} <= set(os.listdir(run_dir / "samples"))
    assert "epoch0000-step0000002.ckpt" in os.listdir(run_dir / "checkpoints")
    assert "at step 3 (6 optimizer steps: 2 per batch)" in capsys.readouterr().out
