import pytest
import torch

from losses import FeatureMatchingLoss


def _features(requires_grad: bool = False):
    fake = [
        [torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([[[[3.0]]]]), torch.tensor([[[[50.0]]]])],
        [torch.tensor([[[[0.5]]]]), torch.tensor([[[[-7.0]]]])],
    ]
    real = [
        [torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0]]]]), torch.tensor([[[[-50.0]]]])],
        [torch.zeros(1, 1, 1, 1), torch.tensor([[[[7.0]]]])],
    ]
    if requires_grad:
        for scale in fake + real:
            for f in scale:
                f.requires_grad_(True)
    return fake, real


def test_two_scale_value_and_weights() -> None:
    fake, real = _features()
    loss = FeatureMatchingLoss(num_D=2, n_layers=3, lambda_feat=10.0)
    # L1 terms (last tensor of each scale skipped): |1|,|2| -> 1.5 ; |3-1| -> 2 ; |0.5| -> 0.5
    assert loss(fake, real).item() == pytest.approx(4 / (3 + 1) * (1 / 2) * 10 * (1.5 + 2 + 0.5))
    loss1 = FeatureMatchingLoss(num_D=2, n_layers=1, lambda_feat=1.0)
    assert loss1(fake, real).item() == pytest.approx(4 / (1 + 1) * (1 / 2) * 1 * (1.5 + 2 + 0.5))


def test_defaults() -> None:
    loss = FeatureMatchingLoss()
    assert (loss.num_D, loss.n_layers, loss.lambda_feat) == (3, 3, 10.0)


def test_gradient_to_fake_not_real() -> None:
    fake, real = _features(requires_grad=True)
    FeatureMatchingLoss(num_D=2, n_layers=3, lambda_feat=10.0)(fake, real).backward()
    w = 4 / 4 * (1 / 2) * 10
    assert torch.allclose(fake[0][0].grad, torch.tensor([[[[w / 2, w / 2]]]]))
    assert fake[0][-1].grad is None  # prediction not used
    assert all(f.grad is None for scale in real for f in scale)


def test_mismatched_lists() -> None:
    fake, real = _features()
    loss = FeatureMatchingLoss(num_D=2)
    with pytest.raises(ValueError):
        loss(fake, real[:1])
    with pytest.raises(ValueError):
        loss(fake, [real[0], real[1][:1]])
    with pytest.raises(ValueError, match="num_D"):
        FeatureMatchingLoss(num_D=3)(fake, real)


def test_terms_are_weighted_as_the_official_code_weights_them() -> None:
    """Bit for bit the official pix2pixHD loop: ``loss += D_weights * feat_weights * L1 * lambda_feat`` per term."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    fake = [[torch.randn(2, 4, 5, 5, generator=g) for _ in range(4)] for _ in range(3)]
    real = [[torch.randn(2, 4, 5, 5, generator=g) for _ in range(4)] for _ in range(3)]
    official = 0
    d_weights, feat_weights = 1.0 / 3, 4.0 / (3 + 1)
    for i in range(3):
        for j in range(len(fake[i]) - 1):
            official += d_weights * feat_weights * F.l1_loss(fake[i][j], real[i][j].detach()) * 10.0
    assert torch.equal(FeatureMatchingLoss(num_D=3, n_layers=3, lambda_feat=10.0)(fake, real), official)
