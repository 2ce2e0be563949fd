"""The wandb (offline) and tensorboard loggers write their files under the run dir."""

from __future__ import annotations

import glob
import os

import pytest

from tasks.train import train

pytestmark = pytest.mark.slow


def test_wandb_offline_run(make_config, tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_config("logger=wandb", run_dir=tmp_path / "run")
    assert cfg.logger.wandb.offline is True
    assert list(cfg.logger.wandb.tags) == ["pix2pixhd", "global", "synthetic_scenes"]
    train(cfg)
    runs = glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*"))
    assert runs, os.listdir(tmp_path / "run")
    files = os.listdir(os.path.join(runs[0], "files")) if os.path.isdir(os.path.join(runs[0], "files")) else []
    assert any(f.endswith(".wandb") for f in os.listdir(runs[0])) or files
    # W&B's two warnings about arguments Lightning passes for it ("anonymous", "resume" offline) are not shown
    out, err = capfd.readouterr()
    assert "anonymous setting" not in out + err and "will be ignored" not in out + err, err[-2000:]


def test_tensorboard_events(make_config, tmp_path) -> None:
    train(make_config("logger=tensorboard", run_dir=tmp_path / "run"))
    assert glob.glob(str(tmp_path / "run" / "tensorboard" / "**" / "events.out.tfevents.*"), recursive=True)


def test_logger_none_trains_without_the_lr_monitor(make_config, tmp_path) -> None:
    """Issue 16 §5: ``logger=none`` crashed in LearningRateMonitor ("Cannot use LearningRateMonitor callback with
    Trainer that has no logger"); the monitor is now left out when there is no logger."""
    cfg = make_config("logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=1", run_dir=tmp_path / "run")
    assert "lr_monitor" in cfg.callbacks
    train(cfg)
    assert os.path.isfile(tmp_path / "run" / "checkpoints" / "last.ckpt")
