"""The conditional-GAN objective (pix2pixHD Eq. 4 + VGG) against hand computations, for any discriminator."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from losses import AdversarialLoss, ConditionalGANObjective, FeatureMatchingLoss, VGGPerceptualLoss
from tests.losses.conftest import TwoConvExtractor


class ScaleD(nn.Module):
    """A 'discriminator' with one scale: features [mean*w, prediction = sum over channels * w]."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        feat = x.mean(dim=1, keepdim=True) * self.w
        return [[feat, x.sum(dim=1, keepdim=True) * self.w]]


def _inputs() -> tuple[Tensor, Tensor, Tensor]:
    torch.manual_seed(0)
    cond = torch.randn(2, 2, 4, 4)
    real = torch.randn(2, 1, 4, 4)
    fake = torch.randn(2, 1, 4, 4, requires_grad=True)
    return cond, real, fake


def test_discriminator_terms_are_half_lsgan_on_fake_and_real() -> None:
    cond, real, fake = _inputs()
    d = ScaleD()
    terms = ConditionalGANObjective(AdversarialLoss("lsgan")).discriminator_terms(d, cond, real, fake)
    pred = lambda img: torch.cat([cond, img], 1).sum(1, keepdim=True) * 0.5  # noqa: E731
    assert set(terms) == {"D_fake", "D_real"}
    torch.testing.assert_close(terms["D_fake"], 0.5 * (pred(fake.detach()) ** 2).mean())
    torch.testing.assert_close(terms["D_real"], 0.5 * ((pred(real) - 1) ** 2).mean())
    sum(terms.values()).backward()
    assert fake.grad is None and d.w.grad is not None  # only D learns from its terms


def test_generator_terms_by_hand_and_switches() -> None:
    cond, real, fake = _inputs()
    d = ScaleD()
    vgg = TwoConvExtractor()
    objective = ConditionalGANObjective(
        AdversarialLoss("lsgan"), FeatureMatchingLoss(num_D=1, n_layers=1, lambda_feat=10.0),
        VGGPerceptualLoss(vgg, layer_weights={"a": 1.0, "b": 0.5}, weight=10.0))
    terms = objective.generator_terms(d, cond, real, fake)
    assert list(terms) == ["G_GAN", "G_GAN_Feat", "G_VGG"]
    x_fake, x_real = torch.cat([cond, fake], 1), torch.cat([cond, real], 1)
    torch.testing.assert_close(terms["G_GAN"], ((x_fake.sum(1) * 0.5 - 1) ** 2).mean())
    # feature matching: 4 / (n_layers + 1) / num_D * lambda_feat * L1 of the one intermediate feature
    fm = (x_fake.mean(1) * 0.5 - x_real.mean(1) * 0.5).abs().mean()
    torch.testing.assert_close(terms["G_GAN_Feat"], 2.0 * 10.0 * fm)
    vgg_l1 = (2 * fake - 2 * real).abs().mean() + 0.5 * (6 * fake - 6 * real).abs().mean()
    torch.testing.assert_close(terms["G_VGG"], 10.0 * vgg_l1)
    sum(terms.values()).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert objective.frozen_networks() == [vgg]
    ablated = ConditionalGANObjective(AdversarialLoss("hinge"), suffix="face")
    assert list(ablated.generator_terms(d, cond, real, fake)) == ["G_GAN_face"]
    assert ablated.frozen_networks() == []


def test_perceptual_network_from_a_factory_is_built_by_the_objective() -> None:
    built: list[nn.Module] = []

    def factory() -> nn.Module:
        built.append(TwoConvExtractor())
        return built[-1]

    objective = ConditionalGANObjective(AdversarialLoss(), perceptual=lambda: VGGPerceptualLoss(factory, {"a": 1.0}))
    assert len(built) == 1 and objective.perceptual.vgg is built[0]
    assert not any(p.requires_grad for p in objective.perceptual.vgg.parameters())


@pytest.mark.parametrize("mode", ["lsgan", "hinge", "bce"])
def test_every_adversarial_mode_gives_finite_terms(mode: str) -> None:
    cond, real, fake = _inputs()
    objective = ConditionalGANObjective(AdversarialLoss(mode))
    for terms in (objective.discriminator_terms(ScaleD(), cond, real, fake),
                  objective.generator_terms(ScaleD(), cond, real, fake)):
        assert all(torch.isfinite(v) for v in terms.values())
