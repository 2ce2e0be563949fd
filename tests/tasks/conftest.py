"""Fixtures of the task tests: one tiny pix2pixHD (stage global) trained for 2 batches, shared by the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import compose_config


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``checkpoints/last.ckpt`` of a 2-batch training run with the tiny test config (32x32, 16x16 in stage global)."""
    from tasks.train import train

    run_dir = tmp_path_factory.mktemp("trained")
    train(compose_config(["callbacks.sample_grid.every_n_steps=0", "trainer.limit_val_batches=0",
                          "trainer.num_sanity_val_steps=0"], run_dir))
    ckpt = Path(run_dir) / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), f"training did not write {ckpt}"
    return str(ckpt)


@pytest.fixture(scope="session")
def clustered_ckpt(trained_ckpt: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``trained_ckpt`` with its feature bank filled by task=cluster_features (written to a temporary folder)."""
    from tasks.pix2pixhd.cluster_features import cluster_features

    folder = tmp_path_factory.mktemp("clustered")
    cfg = compose_config(["task=cluster_features", f"task.ckpt_path={trained_ckpt}",
                          f"task.output={folder / 'clustered.ckpt'}"], folder / "run")
    return cluster_features(cfg)
