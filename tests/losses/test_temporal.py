import pytest
import torch

from losses import temporal_pairs


def test_temporal_pairs() -> None:
    a, b = torch.zeros(2, 3, 4, 5), torch.ones(2, 3, 4, 5)
    pair = temporal_pairs(a, b)
    assert pair.shape == (2, 6, 4, 5)
    assert torch.equal(pair[:, :3], a) and torch.equal(pair[:, 3:], b)
    with pytest.raises(ValueError):
        temporal_pairs(a, torch.ones(2, 3, 4, 4))
