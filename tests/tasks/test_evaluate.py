"""task=test: metrics files, logged values, sample grids; LPIPS / FID skipped in the real offline state."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os

import pytest
import torch

from datamodules.image_grids import to_unit_range
from tasks.builders import build_datamodule
from tasks.config import ConfigError, validate_config
from tasks.evaluate import test as run_test
from tasks.inference import load_for_inference

HUB = os.path.join(torch.hub.get_dir(), "checkpoints")
ALEXNET = os.path.join(HUB, "alexnet-owt-7be5be79.pth")
INCEPTION = os.path.join(HUB, "weights-inception-2015-12-05-6726825d.pth")


@pytest.fixture(scope="module")
def evaluated(trained_ckpt: str, tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import compose_config

    run_dir = tmp_path_factory.mktemp("test_run")
    cfg = compose_config(["task=test", f"task.ckpt_path={trained_ckpt}"], run_dir)
    validate_config(cfg)
    return cfg, run_test(cfg), str(run_dir)


def test_metrics_files_and_values(evaluated) -> None:
    cfg, values, run_dir = evaluated
    report = json.loads(open(os.path.join(run_dir, "metrics.json")).read())
    assert report["metrics"] == values
    assert report["num_images"] == cfg.dataset.num_test
    for name in ("psnr", "ssim"):
        assert math.isfinite(values[name])
    assert -1.0 <= values["ssim"] <= 1.0
    md = open(os.path.join(run_dir, "metrics.md")).read()
    assert "| metric | value |" in md
    assert f"| psnr | {values['psnr']:.4f} |" in md
    assert f"| ssim | {values['ssim']:.4f} |" in md


def test_lpips_and_fid_are_skipped_offline_with_a_reason(evaluated) -> None:
    _, values, run_dir = evaluated
    report = json.loads(open(os.path.join(run_dir, "metrics.json")).read())
    md = open(os.path.join(run_dir, "metrics.md")).read()
    lpips_possible = os.path.isfile(ALEXNET)
    fid_possible = importlib.util.find_spec("torch_fidelity") is not None and os.path.isfile(INCEPTION)
    for name, possible, why in (("lpips", lpips_possible, "alexnet"), ("fid", fid_possible, "inception"),
                                ("kid", fid_possible, "inception")):
        if possible:
            assert name in values and math.isfinite(values[name])
        else:
            assert name not in values
            assert why in report["skipped"][name] and "python run.py task=fetch_weights" in report["skipped"][name]
            assert f"| {name} | skipped: " in md
    assert set(report["versions"]) >= {"torch", "torchmetrics", "torch-fidelity"}
    assert "versions: torch " in md


def test_psnr_matches_an_independent_computation(evaluated, trained_ckpt: str) -> None:
    """Mean per-image PSNR on [0, 1] images, recomputed by hand from the same generator outputs."""
    cfg, values, _ = evaluated
    module = load_for_inference(cfg, trained_ckpt)
    dm = build_datamodule(cfg)
    dm.setup("test")
    psnrs = []
    for batch in dm.test_dataloader():
        fake = to_unit_range(module.generate(batch, "encode"))
        real = to_unit_range(batch["image"])
        mse = ((fake - real) ** 2).flatten(1).mean(1)
        psnrs += (10 * torch.log10(1.0 / mse)).tolist()
    assert values["psnr"] == pytest.approx(sum(psnrs) / len(psnrs), rel=1e-4)


def test_metrics_are_logged_and_grids_written(evaluated) -> None:
    _, values, run_dir = evaluated
    with open(os.path.join(run_dir, "csv", "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["test/psnr"]) == pytest.approx(values["psnr"])
    assert float(rows[-1]["test/ssim"]) == pytest.approx(values["ssim"])
    grids = os.listdir(os.path.join(run_dir, "test_samples"))
    assert grids and all(g.endswith(".png") for g in grids)


def test_unknown_metric_and_missing_checkpoint(make_config, trained_ckpt: str, tmp_path) -> None:
    cfg = make_config("task=test", f"task.ckpt_path={trained_ckpt}", "task.metrics=[psnr,bleu]")
    with pytest.raises(ValueError, match="bleu"):
        run_test(cfg)
    missing = str(tmp_path / "missing.ckpt")
    cfg = make_config("task=test", f"task.ckpt_path={missing}")
    with pytest.raises(ConfigError, match=missing):
        validate_config(cfg)
    with pytest.raises(FileNotFoundError, match=missing):
        run_test(cfg)
