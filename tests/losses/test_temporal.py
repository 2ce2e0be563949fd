import pytest
import torch

from losses import TemporalConsistencyLoss, temporal_pairs
from tests.losses.conftest import t


def test_temporal_pairs() -> None:
    a, b = torch.zeros(2, 3, 4, 5), torch.ones(2, 3, 4, 5)
    pair = temporal_pairs(a, b)
    assert pair.shape == (2, 6, 4, 5)
    assert torch.equal(pair[:, :3], a) and torch.equal(pair[:, 3:], b)
    with pytest.raises(ValueError):
        temporal_pairs(a, torch.ones(2, 3, 4, 4))


def test_temporal_consistency_value_and_grad() -> None:
    fake_t = torch.zeros(1, 1, 2, 2, requires_grad=True)
    fake_t1 = t([1.0, 2.0], [3.0, 4.0]).requires_grad_(True)
    real_t = torch.ones(1, 1, 2, 2, requires_grad=True)
    real_t1 = torch.full((1, 1, 2, 2), 2.0, requires_grad=True)
    # fake diff 1,2,3,4 ; real diff 1,1,1,1 -> |0,1,2,3| mean 1.5
    value = TemporalConsistencyLoss(weight=2.0)(fake_t, fake_t1, real_t, real_t1)
    assert value.item() == pytest.approx(2 * 1.5)
    value.backward()
    assert fake_t1.grad is not None and fake_t.grad is not None
    assert real_t.grad is None and real_t1.grad is None
