"""Everybody Dance Now's own networks (Chan et al., ICCV 2019): the temporal generator (§3.2: a pix2pixHD generator
whose input is the current pose label and the previous generated frame, zeros for the first frame) and the face
residual generator (§3.3: a small generator that adds a residual to the face crop), with the crop helpers.
The frame generators themselves are pix2pixHD's (:mod:`networks.pix2pixhd`), the discriminators are shared."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class TemporalGenerator(nn.Module):
    """``G(x_t, previous)`` = ``generator(cat([x_t, previous]))``; ``previous`` = zeros for a sequence's first frame.

    ``generator``: a factory ``(input_nc, output_nc) -> nn.Module`` (pix2pixHD's GlobalGenerator or LocalEnhancer),
    built with ``label_nc + output_nc`` input channels.
    """

    def __init__(self, generator: Callable[..., nn.Module], label_nc: int = 3, output_nc: int = 3) -> None:
        super().__init__()
        self.label_nc, self.output_nc = int(label_nc), int(output_nc)
        self.generator = generator(input_nc=self.label_nc + self.output_nc, output_nc=self.output_nc)
        self.total_stride = int(getattr(self.generator, "total_stride", 1))

    def forward(self, label: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        if previous is None:
            previous = label.new_zeros((label.shape[0], self.output_nc, *label.shape[-2:]))
        return self.generator(torch.cat([label, previous], dim=1))

    def sequence(self, labels: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """Frame by frame over ``labels`` [B, T, C, H, W], each frame conditioned on the previous output (the
        first on ``previous``, zeros by default); gradients flow through the whole chain. Returns [B, T, 3, H, W]."""
        frames = []
        for t in range(labels.shape[1]):
            previous = self(labels[:, t], previous)
            frames.append(previous)
        return torch.stack(frames, dim=1)

    def part_modules(self) -> dict[str, list[nn.Module]]:
        if hasattr(self.generator, "part_modules"):
            return self.generator.part_modules()
        return {"global": [self.generator]}


def crop_boxes(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Square crops of ``x`` [B, C, H, W] at ``boxes`` [B, 3] = (top, left, size), one size for the batch."""
    size = int(boxes[0, 2])
    if bool((boxes[:, 2] != size).any()):
        raise ValueError(f"face boxes of one batch must share a size, got {boxes[:, 2].tolist()}")
    return torch.stack([x[i, :, int(top):int(top) + size, int(left):int(left) + size]
                        for i, (top, left, _) in enumerate(boxes)])


def paste_boxes(x: torch.Tensor, crops: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``x`` with ``crops`` written back at ``boxes`` (a new tensor; differentiable w.r.t. both)."""
    rows = []
    for i, (top, left, s) in enumerate(boxes.tolist()):
        pad = (left, x.shape[-1] - left - s, top, x.shape[-2] - top - s)
        mask = torch.nn.functional.pad(torch.ones_like(crops[i, :1]), pad)
        rows.append(x[i] * (1 - mask) + torch.nn.functional.pad(crops[i], pad))
    return torch.stack(rows)


class FaceResidualGenerator(nn.Module):
    """The face GAN's generator (paper §3.3, official ``faceGen``): ``face + G_f(cat([pose crop, face crop]))``.

    ``generator``: a factory ``(input_nc, output_nc) -> nn.Module`` (official: pix2pixHD's global generator, ngf 64),
    built with ``label_nc + 3`` input channels and 3 output channels (the residual, in [-1, 1] from its Tanh).
    """

    def __init__(self, generator: Callable[..., nn.Module], label_nc: int = 3) -> None:
        super().__init__()
        self.generator = generator(input_nc=int(label_nc) + 3, output_nc=3)
        self.total_stride = int(getattr(self.generator, "total_stride", 1))

    def residual(self, label_crop: torch.Tensor, face_crop: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat([label_crop, face_crop], dim=1))

    def forward(self, label_crop: torch.Tensor, face_crop: torch.Tensor) -> torch.Tensor:
        return face_crop + self.residual(label_crop, face_crop)
