"""Everybody Dance Now networks: the temporal generator's input, gradients through both frames, face crops."""

from __future__ import annotations

import functools

import pytest
import torch

from networks.discriminators import MultiscaleDiscriminator
from networks.edn import FaceResidualGenerator, TemporalGenerator, crop_boxes, paste_boxes
from networks.pix2pixhd import GlobalGenerator

TINY_G = functools.partial(GlobalGenerator, ngf=4, n_downsampling=2, n_blocks=1)


def test_temporal_generator_input_is_label_plus_previous_frame() -> None:
    g = TemporalGenerator(TINY_G, label_nc=3)
    first_conv = next(m for m in g.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 3 + 3
    label = torch.randn(2, 3, 16, 32)
    assert torch.equal(g(label), g(label, torch.zeros(2, 3, 16, 32)))   # the first frame uses zeros
    out = g.sequence(torch.randn(2, 2, 3, 16, 32))
    assert out.shape == (2, 2, 3, 16, 32)


def test_gradients_flow_through_both_frames() -> None:
    torch.manual_seed(0)
    g = TemporalGenerator(TINY_G, label_nc=3)
    labels = torch.randn(1, 2, 3, 16, 32, requires_grad=True)
    out = g.sequence(labels)
    out[:, 1].sum().backward()   # a loss on frame t+1 only ...
    assert labels.grad[:, 0].abs().sum() > 0   # ... reaches frame t's input through G(x_t+1, G(x_t, 0))
    assert labels.grad[:, 1].abs().sum() > 0


def test_temporal_discriminator_sees_both_frames() -> None:
    d = MultiscaleDiscriminator(input_nc=2 * (3 + 3), ndf=4, n_layers=2, num_D=2)
    pair = torch.randn(2, 12, 16, 32, requires_grad=True)
    preds = d(pair)
    sum(p[-1].mean() for p in preds).backward()
    assert pair.grad[:, :6].abs().sum() > 0 and pair.grad[:, 6:].abs().sum() > 0


def test_face_residual_adds_to_the_crop_and_crops_paste_back() -> None:
    f = FaceResidualGenerator(TINY_G, label_nc=3)
    label, face = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    assert torch.allclose(f(label, face), face + f.residual(label, face))
    x = torch.arange(2 * 1 * 6 * 10, dtype=torch.float32).view(2, 1, 6, 10)
    boxes = torch.tensor([[0, 0, 4], [2, 6, 4]])
    crops = crop_boxes(x, boxes)
    assert torch.equal(crops[1], x[1, :, 2:6, 6:10])
    pasted = paste_boxes(x, torch.zeros_like(crops), boxes)
    assert pasted[1, 0, 2:6, 6:10].abs().sum() == 0 and torch.equal(pasted[1, 0, :2], x[1, 0, :2])
    with pytest.raises(ValueError, match="share a size"):
        crop_boxes(x, torch.tensor([[0, 0, 4], [0, 0, 2]]))
