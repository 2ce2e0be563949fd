"""The identity network X2Face's identity stage uses (``model=face_id``).
Docs: docs/papers/x2face.md (commands, datasets, official weights, measured figures).

The paper's identity loss uses VGG-Face (a VGG trained to classify 2,622 celebrities), which cannot be downloaded
here. This module trains the same kind of network, a VGG-11 (configuration A) shaped classifier
(``networks.x2face.FaceIdentityNet``), as an identity classifier on the face dataset's training identities
(cross-entropy; validation on videos of the same identities that training does not see). Its checkpoint is what
``model=x2face stage=identity model.identity_weights=...`` loads; a user's VGG-Face state dict loads there instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import OptimizerFactory, SynthesisModule


class FaceIDModule(SynthesisModule):
    """``networks.classifier``: a factory of ``FaceIdentityNet`` (given ``num_classes``)."""

    model_name = "face_id"
    sweep_metric = "val/loss"

    def __init__(self, networks: Mapping[str, Callable[..., nn.Module]], stage: Mapping[str, Any],
                 optimizer: OptimizerFactory, num_classes: int, scheduler: Mapping[str, Any] | None = None,
                 ema: Mapping[str, Any] | None = None):
        super().__init__(stage, optimizer, scheduler, ema)
        if self.stage_spec.name != "classify":
            raise ValueError(f"model face_id has the stage classify, not '{self.stage_spec.name}'")
        self.num_classes = int(num_classes)
        self.classifier = networks["classifier"](num_classes=self.num_classes)
        self.setup_stage()

    def parts(self) -> dict[str, list[nn.Module]]:
        return {"classifier": [self.classifier]}

    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        have = getattr(dm, "num_classes", None)
        if have is not None and int(have) != self.num_classes:
            raise ValueError(f"model.num_classes={self.num_classes} but the dataset has {have} training identities: "
                             f"set model.num_classes={have}")

    def loss_terms(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"cross_entropy": F.cross_entropy(self.classifier(batch["image"])["logits"], batch["label"])}

    def _evaluate(self, batch: Mapping[str, Any], prefix: str) -> None:
        logits = self.classifier(batch["image"])["logits"]
        n = int(batch["label"].shape[0])
        self.log(f"{prefix}/loss", F.cross_entropy(logits, batch["label"]), batch_size=n, sync_dist=True)
        self.log(f"{prefix}/accuracy", (logits.argmax(1) == batch["label"]).float().mean(), prog_bar=True,
                 batch_size=n, sync_dist=True)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    generates_images = False  # identity labels

    @property
    def generate_range(self) -> tuple[float, float]:  # type: ignore[override]
        return (0.0, float(self.num_classes - 1))

    @torch.no_grad()
    def generate(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Predicted identity labels."""
        return self.classifier(batch["image"])["logits"].argmax(1)

    def sample_images(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"image": batch["image"].clamp(0, 1)}

    def summary_networks(self, h: int, w: int) -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]:
        return [("classifier", self.classifier, (torch.zeros(1, 3, h, w),))]
