"""pix2pixHD's own task=test figures (``model.test_metrics``): the segmentation score (Wang et al., CVPR 2018, §4.1
and Table 1). A segmentation network runs on each synthesized image; pixel accuracy and mean IoU of its prediction
against the input label map, over the whole test split (one confusion matrix; mIoU over the classes labelled or
predicted). The same on the real photos is the upper bound (``*_real``).

The segmenter (``task.segmenter``) is either a ``model=segmenter`` checkpoint (``python run.py model=segmenter``,
trained on the dataset's real photos -> labels) or any TorchScript file mapping [B, 3, H, W] RGB images in [0, 1]
to [B, label_nc, h, w] logits (resized to the label map when h, w differ), whose class ids are the dataset's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from networks.segmenter import confusion_matrix, mean_iou, pixel_accuracy

NAMES = ("seg_pixel_accuracy", "seg_mean_iou", "seg_pixel_accuracy_real", "seg_mean_iou_real")
HINT = ("set task.segmenter=<model=segmenter checkpoint (python run.py model=segmenter) | TorchScript file: "
        "[B,3,H,W] in [0,1] -> [B,label_nc,H,W] logits>")


def load_segmenter(path: str, device: torch.device | str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """``images in [0, 1] -> logits`` from a ``model=segmenter`` checkpoint (through the one loader) or a
    TorchScript file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"task.segmenter={path} does not exist; {HINT}")
    if path.endswith(".ckpt"):
        from lightning_modules.loading import load

        module = load(path, device=device)
        if getattr(module, "model_name", None) != "segmenter":
            raise ValueError(f"task.segmenter={path} is a '{module.model_name}' checkpoint; pass a model=segmenter "
                             f"checkpoint (python run.py model=segmenter) or a TorchScript file")
        return module.segment
    try:
        script = torch.jit.load(path, map_location=device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"task.segmenter={path} is neither a .ckpt nor a TorchScript file ({str(err)[:120]}); "
                         f"{HINT}") from None
    return script.eval()


class SegmentationScore:
    """Accumulates the confusion matrices of the generated and the real images over the test batches."""

    def __init__(self, cfg: Any, module: Any) -> None:
        self.num_classes = int(cfg.dataset.label_nc)
        dontcare = cfg.dataset.get("dontcare_id")
        self.ignore_index = None if dontcare is None else int(dontcare)
        path = cfg.task.get("segmenter")
        self.weights: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.segmenter: Callable[[torch.Tensor], torch.Tensor] | None = None
        if path:
            self.segmenter = load_segmenter(str(path), next(module.parameters()).device)
            self.weights["segmenter"] = str(path)
        else:
            self.skipped = {name: f"no segmenter: {HINT}" for name in NAMES}
        self.confusion = {"": torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64),
                          "_real": torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64)}

    def _predict(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        assert self.segmenter is not None
        logits = self.segmenter(images)
        if logits.dim() != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(f"task.segmenter gave logits of shape {tuple(logits.shape)}; expected [B, "
                             f"{self.num_classes} (dataset.label_nc), H, W]")
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits.argmax(1)

    @torch.no_grad()
    def update(self, batch: dict[str, Any], fake: torch.Tensor, real: torch.Tensor) -> None:
        if self.segmenter is None:
            return
        label = batch["label"][:, 0]
        for suffix, images in (("", fake), ("_real", real)):
            pred = self._predict(images, tuple(label.shape[-2:]))
            self.confusion[suffix] += confusion_matrix(pred, label, self.num_classes, self.ignore_index).cpu()

    def compute(self) -> tuple[dict[str, float], dict[str, str]]:
        if self.segmenter is None:
            return {}, dict(self.skipped)
        values = {}
        for suffix, confusion in self.confusion.items():
            values[f"seg_pixel_accuracy{suffix}"] = pixel_accuracy(confusion)
            values[f"seg_mean_iou{suffix}"] = mean_iou(confusion)
        return values, {}
