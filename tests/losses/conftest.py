"""Tiny fake feature extractors for the loss tests (stand-ins for networks.vgg.VGG19Features)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn


class TwoConvExtractor(nn.Module):
    """1x1 convs without bias: ``a = 2 x``, ``b = 3 a = 6 x``; returns ``{"a": a, "b": b}``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(1, 1, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv1.weight.fill_(2.0)
            self.conv2.weight.fill_(3.0)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        a = self.conv1(x)
        return {"a": a, "b": self.conv2(a)}


class FakeVGG(nn.Module):
    """Returns ``relu{i}_1 = i * scale * x`` for i = 1..5 (the VGG19Features layer names)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {f"relu{i}_1": i * self.scale * x for i in range(1, 6)}


@pytest.fixture
def two_conv() -> TwoConvExtractor:
    return TwoConvExtractor()


@pytest.fixture
def fake_vgg() -> FakeVGG:
    return FakeVGG()


def t(*rows: list[float]) -> Tensor:
    """A [1,1,H,W] tensor from explicit rows."""
    return torch.tensor([list(r) for r in rows], dtype=torch.float32).view(1, 1, len(rows), len(rows[0]))
