"""The segmenter of pix2pixHD's segmentation score (Wang et al., CVPR 2018, §4.1 / Table 1: a segmentation network
runs on the synthesized images; pixel accuracy and mean IoU against the input label map).

The paper uses PSPNet trained on Cityscapes, which cannot be downloaded here; :class:`SegmentationNet` is a small
U-Net-style encoder-decoder that ``model=segmenter`` trains on a dataset's real photos -> labels. The scoring
helpers (a confusion matrix over the valid pixels, pixel accuracy, mean IoU over the classes present) are plain
tensor functions, shared by the module's validation and task=test.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegmentationNet(nn.Module):
    """[B, 3, H, W] images in [0, 1] -> [B, num_classes, H, W] logits. ``widths``: channels per level; each level
    after the first halves the size (H and W must be multiples of ``2 ** (len(widths) - 1)``)."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        self.stride = 2 ** (len(widths) - 1)
        self.down = nn.ModuleList([_block(3, widths[0])] +
                                  [_block(a, b, stride=2) for a, b in zip(widths[:-1], widths[1:], strict=True)])
        self.up = nn.ModuleList([_block(b + a, a) for a, b in zip(widths[:-1], widths[1:], strict=True)])
        self.head = nn.Conv2d(widths[0], int(num_classes), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(reversed(self.up), reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


def valid_labels(label: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """Pixels that count: ids in [0, num_classes) other than ``ignore_index``."""
    valid = (label >= 0) & (label < num_classes)
    return valid & (label != ignore_index) if ignore_index is not None else valid


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """[num_classes, num_classes] counts (row: label, column: prediction) over the valid pixels."""
    keep = valid_labels(label, num_classes, ignore_index)
    index = label[keep].long() * num_classes + pred[keep].long().clamp(0, num_classes - 1)
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes).double()


def pixel_accuracy(confusion: torch.Tensor) -> float:
    return float(confusion.diagonal().sum() / confusion.sum().clamp_min(1))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean over the classes with a non-empty union (labelled or predicted) of TP / (TP + FP + FN)."""
    tp = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    return float((tp[present] / union[present]).mean()) if bool(present.any()) else float("nan")
