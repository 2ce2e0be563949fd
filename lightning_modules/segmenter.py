"""The segmenter of pix2pixHD's segmentation score (``model=segmenter``; paper §4.1, Table 1).

The paper scores synthesized Cityscapes images with a pretrained PSPNet; that network cannot be downloaded here, so
this module trains a small encoder-decoder (``networks.segmenter.SegmentationNet``) on the dataset's real photos ->
label maps (cross-entropy over the valid label ids). Its checkpoint is what ``model=pix2pixhd task=test
task.segmenter=<ckpt>`` loads; a user's own segmenter (e.g. a Cityscapes one) can be given as a TorchScript file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from datamodules.image_grids import colorize_labels, to_unit_range
from lightning_modules.base import OptimizerFactory, SynthesisModule
from networks.segmenter import confusion_matrix, mean_iou, pixel_accuracy, valid_labels


class SegmenterModule(SynthesisModule):
    """``networks.segmenter``: a factory of ``SegmentationNet`` (given ``num_classes``). ``ignore_index``: a label
    id that does not count (ids outside [0, num_classes) never do)."""

    model_name = "segmenter"
    sweep_metric = "val/loss"
    generates_images = False  # label maps
    stride_owner = "segmenter"

    def __init__(self, networks: Mapping[str, Callable[..., nn.Module]], stage: Mapping[str, Any],
                 optimizer: OptimizerFactory, num_classes: int, ignore_index: int | None = None,
                 scheduler: Mapping[str, Any] | None = None, ema: Mapping[str, Any] | None = None):
        super().__init__(stage, optimizer, scheduler, ema)
        if self.stage_spec.name != "segment":
            raise ValueError(f"model segmenter has the stage segment, not '{self.stage_spec.name}'")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.segmenter = networks["segmenter"](num_classes=self.num_classes)
        self.setup_stage()

    def parts(self) -> dict[str, list[nn.Module]]:
        return {"segmenter": [self.segmenter]}

    @property
    def generate_range(self) -> tuple[float, float]:  # type: ignore[override]
        return (0.0, float(self.num_classes - 1))

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> [B, num_classes, H, W] logits (the interface task.segmenter files share)."""
        return self.segmenter(images)

    def _targets(self, batch: Mapping[str, Any]) -> torch.Tensor:
        label = batch["label"][:, 0].long()
        return torch.where(valid_labels(label, self.num_classes, self.ignore_index), label,
                           torch.full_like(label, -100))

    def loss_terms(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.segment(to_unit_range(batch["image"]))
        return {"cross_entropy": F.cross_entropy(logits, self._targets(batch), ignore_index=-100)}

    def _evaluate(self, batch: Mapping[str, Any], prefix: str) -> None:
        logits = self.segment(to_unit_range(batch["image"]))
        target = self._targets(batch)
        confusion = confusion_matrix(logits.argmax(1), target, self.num_classes)
        n = int(target.shape[0])
        self.log(f"{prefix}/loss", F.cross_entropy(logits, target, ignore_index=-100), batch_size=n, sync_dist=True)
        self.log(f"{prefix}/pixel_accuracy", pixel_accuracy(confusion), prog_bar=True, batch_size=n, sync_dist=True)
        self.log(f"{prefix}/mean_iou", mean_iou(confusion), batch_size=n, sync_dist=True)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    @torch.no_grad()
    def generate(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Predicted label maps [B, H, W] of the batch's photos."""
        return self.segment(to_unit_range(batch["image"])).argmax(1)

    def sample_images(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"image": to_unit_range(batch["image"]), "label": colorize_labels(batch["label"], self.num_classes),
                "predicted": colorize_labels(self.generate(batch)[:, None], self.num_classes)}

    def summary_networks(self, h: int, w: int) -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]:
        return [("segmenter", self.segmenter, (torch.zeros(1, 3, h, w),))]
