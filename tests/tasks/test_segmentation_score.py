"""pix2pixHD's segmentation score (tasks/pix2pixhd/metrics.py): a segmenter perfect on the real images scores 1 on
them; on a generator that ignores its input the score is what a hand computation says; task=test reports it with
FID/KID/LPIPS from weight files, and a model=segmenter checkpoint loads through the one loader."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from omegaconf import OmegaConf

from networks.segmenter import confusion_matrix, mean_iou, pixel_accuracy
from tasks.pix2pixhd.metrics import SegmentationScore
from tests.tasks.test_image_metrics import _random_inception

pytestmark = pytest.mark.usefixtures("one_thread")
PALETTE = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


class NearestColour(torch.nn.Module):
    """Logits = minus the distance to each class colour: perfect on images painted with PALETTE."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("palette", PALETTE.clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return -((images[:, None] - self.palette[None, :, :, None, None]) ** 2).sum(2)


def _scripted(path) -> str:
    torch.jit.script(NearestColour()).save(str(path))
    return str(path)


class _Module(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def _cfg(segmenter: str | None, dontcare: int | None = None):
    return OmegaConf.create({"dataset": {"label_nc": 4, "dontcare_id": dontcare}, "task": {"segmenter": segmenter}})


def test_perfect_on_real_and_a_hand_computation_for_a_generator_that_ignores_its_input(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    labels = [torch.randint(0, 4, (2, 1, 8, 8), generator=g) for _ in range(3)]
    labels[0][0, 0, :2] = 7  # an id past label_nc: does not count
    score = SegmentationScore(_cfg(_scripted(tmp_path / "seg.pt")), _Module())
    for label in labels:
        real = PALETTE[label[:, 0].clamp(0, 3)].permute(0, 3, 1, 2)
        fake = PALETTE[2].view(1, 3, 1, 1).expand_as(real)  # the same image whatever the label: class 2 everywhere
        score.update({"label": label}, fake, real)
    values, skipped = score.compute()
    assert not skipped
    assert values["seg_pixel_accuracy_real"] == 1.0 and values["seg_mean_iou_real"] == 1.0
    all_labels = torch.cat([x.flatten() for x in labels])
    valid = all_labels[all_labels < 4]
    n2, n = int((valid == 2).sum()), valid.numel()
    present = len(set(valid.tolist()))  # IoU(2) = n2 / n (every pixel predicted 2); the other classes 0
    assert values["seg_pixel_accuracy"] == pytest.approx(n2 / n)
    assert values["seg_mean_iou"] == pytest.approx(n2 / n / present)


def test_helpers_on_a_small_confusion() -> None:
    label = torch.tensor([0, 0, 1, 1, 2, 3])
    pred = torch.tensor([0, 1, 1, 1, 0, 3])
    c = confusion_matrix(pred, label, 4, ignore_index=3)  # class 3 ignored
    assert c.sum() == 5 and pixel_accuracy(c) == pytest.approx(3 / 5)
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (3 + 2 - 2) = 2/3; class 2: 0 / 1 = 0
    assert mean_iou(c) == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)


def test_without_a_segmenter_the_score_is_skipped_with_the_hint() -> None:
    values, skipped = SegmentationScore(_cfg(None), _Module()).compute()
    assert not values and "task.segmenter=" in skipped["seg_mean_iou"] and "model=segmenter" in skipped["seg_mean_iou"]
    with pytest.raises(FileNotFoundError, match="task.segmenter=/nowhere.pt"):
        SegmentationScore(_cfg("/nowhere.pt"), _Module())


def test_task_test_reports_the_segmentation_score_fid_kid_and_lpips(trained_ckpt: str, tmp_path) -> None:
    """The issue's command at size=tiny: every figure from local files, one JSON + Markdown report."""
    import torchvision

    from tasks.config import validate_config
    from tasks.evaluate import test as run_test
    from tests.conftest import compose_config

    inception, alexnet = str(tmp_path / "inception.pth"), str(tmp_path / "alexnet.pth")
    _random_inception(inception)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), alexnet)
    seg = str(tmp_path / "seg.pt")
    torch.jit.script(torch.nn.Conv2d(3, 8, 1)).save(seg)  # label_nc 8 logits; an untrained 'segmenter'
    cfg = compose_config(["task=test", f"task.ckpt_path={trained_ckpt}", f"task.segmenter={seg}",
                          f"task.fid_weights={inception}", f"task.lpips_weights={alexnet}",
                          "dataset.image_size=[64,64]"], tmp_path / "run")  # 32x32 in stage global: AlexNet takes >= 31
    validate_config(cfg)
    values = run_test(cfg)
    report = json.loads(open(os.path.join(tmp_path, "run", "metrics.json")).read())
    for name in ("psnr", "ssim", "lpips", "fid", "kid", "seg_pixel_accuracy", "seg_mean_iou",
                 "seg_pixel_accuracy_real", "seg_mean_iou_real"):
        assert name in values, (name, report["skipped"])
    assert 0 <= values["seg_pixel_accuracy"] <= 1 and math.isfinite(values["lpips"])
    assert set(report["weights"]) == {"lpips", "fid", "kid", "segmenter"}
    assert report["weights"]["segmenter"]["path"] == seg and len(report["weights"]["fid"]["sha256"]) == 64
    md = open(os.path.join(tmp_path, "run", "metrics.md")).read()
    assert "| seg_mean_iou_real |" in md and "inception.pth" in md


def test_images_too_small_for_the_lpips_backbone_are_skipped_with_the_reason(trained_ckpt: str, tmp_path) -> None:
    import torchvision

    from tasks.evaluate import test as run_test
    from tests.conftest import compose_config

    alexnet = str(tmp_path / "alexnet.pth")
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), alexnet)
    cfg = compose_config(["task=test", f"task.ckpt_path={trained_ckpt}", f"task.lpips_weights={alexnet}",
                          "task.metrics=[psnr,lpips]"], tmp_path / "run")  # 16x16 images in stage global
    values = run_test(cfg)
    report = json.loads(open(os.path.join(tmp_path, "run", "metrics.json")).read())
    assert "psnr" in values and "lpips" not in values
    assert "smaller than the 31 pixels" in report["skipped"]["lpips"] and "lpips" not in report["weights"]


@pytest.mark.slow
def test_a_trained_segmenter_checkpoint_scores_through_the_loader(trained_ckpt: str, tmp_path) -> None:
    from tasks.evaluate import test as run_test
    from tasks.train import train
    from tests.conftest import TINY_PIX2PIXHD, compose_config

    seg_run = tmp_path / "seg"
    train(compose_config(["model=segmenter", *TINY_PIX2PIXHD, "callbacks.sample_grid.every_n_steps=0"], seg_run,
                         tiny=False))
    ckpt = str(seg_run / "checkpoints" / "last.ckpt")
    cfg = compose_config(["task=test", f"task.ckpt_path={trained_ckpt}", f"task.segmenter={ckpt}",
                          "task.metrics=[psnr]"], tmp_path / "run")
    values = run_test(cfg)
    assert 0 <= values["seg_pixel_accuracy_real"] <= 1 and 0 <= values["seg_mean_iou"] <= 1
    with pytest.raises(ValueError, match="is a 'pix2pixhd' checkpoint"):
        run_test(compose_config(["task=test", f"task.ckpt_path={trained_ckpt}", f"task.segmenter={trained_ckpt}"],
                                tmp_path / "run2"))
