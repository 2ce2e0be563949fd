import pytest
import torch
from torch import nn

from networks.pix2pixhd import FeatureEncoder, instance_average_pool, instance_mean_features


def naive_instance_average_pool(features: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    """Loop reference (as in official pix2pixHD): per batch item, per instance id, per channel."""
    out = torch.zeros_like(features)
    for b in range(features.shape[0]):
        for inst_id in torch.unique(inst[b]):
            mask = inst[b, 0] == inst_id
            for c in range(features.shape[1]):
                out[b, c][mask] = features[b, c][mask].mean()
    return out


def hand_example() -> tuple[torch.Tensor, torch.Tensor]:
    inst = torch.tensor([[[[7, 7], [3, 3]]], [[[7, 7], [7, 3]]]])
    ch0 = torch.tensor([[[1.0, 3.0], [10.0, 20.0]], [[5.0, 6.0], [7.0, 100.0]]])
    features = torch.stack([ch0, -2 * ch0], dim=1)  # [2, 2, 2, 2]
    return features, inst


def test_instance_average_pool_hand_example_keeps_batch_items_apart() -> None:
    features, inst = hand_example()
    out = instance_average_pool(features, inst)
    expected0 = torch.tensor([[[[2.0, 2.0], [15.0, 15.0]]], [[[6.0, 6.0], [6.0, 100.0]]]])
    assert out.shape == features.shape
    torch.testing.assert_close(out[:, :1], expected0)
    torch.testing.assert_close(out[:, 1:], -2 * expected0)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int16])
def test_instance_average_pool_large_and_negative_ids(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    choices = torch.tensor([26001, -5, 0, 24000, 26002])
    inst = choices[torch.randint(0, len(choices), (3, 1, 6, 7))].to(dtype)
    features = torch.randn(3, 4, 6, 7)
    torch.testing.assert_close(
        instance_average_pool(features, inst), naive_instance_average_pool(features, inst)
    )


def test_instance_average_pool_many_instances_matches_naive() -> None:
    torch.manual_seed(1)
    inst = torch.randint(-100, 100, (2, 1, 16, 16))
    features = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(
        instance_average_pool(features, inst), naive_instance_average_pool(features, inst)
    )


def test_instance_average_pool_gradcheck() -> None:
    features, inst = hand_example()
    features = features.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: instance_average_pool(f, inst), (features,))
    # the gradient of the sum of an instance's pooled pixels w.r.t. each of its pixels is 1
    out = instance_average_pool(features, inst)
    out[1, 0].sum().backward()
    torch.testing.assert_close(features.grad[1, 0], torch.ones(2, 2, dtype=torch.double))
    assert features.grad[0].abs().sum() == 0 and features.grad[1, 1].abs().sum() == 0


def test_instance_average_pool_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="inst"):
        instance_average_pool(torch.randn(2, 3, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        instance_average_pool(torch.randn(1, 3, 2, 2), torch.full((1, 1, 2, 2), 0.5))


def test_instance_mean_features_rows() -> None:
    features, inst = hand_example()
    batch_index, instance_id, means, counts = instance_mean_features(features, inst)
    assert batch_index.dtype == instance_id.dtype == counts.dtype == torch.long
    assert batch_index.tolist() == [0, 0, 1, 1]
    assert instance_id.tolist() == [3, 7, 3, 7]
    assert counts.tolist() == [2, 2, 1, 3]
    torch.testing.assert_close(
        means, torch.tensor([[15.0, -30.0], [2.0, -4.0], [100.0, -200.0], [6.0, -12.0]])
    )


def test_instance_mean_features_large_ids_consistent_with_pool() -> None:
    torch.manual_seed(2)
    inst = torch.tensor([26001, -3, 7])[torch.randint(0, 3, (2, 1, 5, 5))]
    features = torch.randn(2, 3, 5, 5)
    batch_index, instance_id, means, counts = instance_mean_features(features, inst)
    pooled = instance_average_pool(features, inst)
    assert int(counts.sum()) == 2 * 5 * 5
    for b, i, m, n in zip(batch_index, instance_id, means, counts, strict=True):
        mask = inst[b, 0] == i
        assert int(mask.sum()) == int(n)
        torch.testing.assert_close(pooled[b, :, mask].T, m.expand(int(n), 3))


def test_feature_encoder_constant_inside_instances() -> None:
    torch.manual_seed(0)
    enc = FeatureEncoder(input_nc=3, output_nc=3, nef=4, n_downsampling=2)
    assert enc.total_stride == 4
    image = torch.randn(2, 3, 32, 32)
    inst = torch.zeros(2, 1, 32, 32, dtype=torch.long)
    inst[:, :, :16] = 26001
    inst[1, :, 20:, 10:] = -4
    out = enc(image, inst)
    assert out.shape == (2, 3, 32, 32)
    for b in range(2):
        ids = torch.unique(inst[b])
        values = []
        for i in ids:
            pix = out[b, :, inst[b, 0] == i]
            torch.testing.assert_close(pix, pix[:, :1].expand_as(pix))
            values.append(pix[:, 0])
        assert not torch.allclose(values[0], values[1])  # different instances get different codes
    torch.testing.assert_close(out, instance_average_pool(enc.model(image), inst))


def test_feature_encoder_layout_and_gradients() -> None:
    enc = FeatureEncoder(input_nc=3, output_nc=3, nef=4, n_downsampling=2)
    convs = [m for m in enc.model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16, 3]
    assert [m.out_channels for m in enc.model if isinstance(m, nn.ConvTranspose2d)] == [8, 4]
    assert isinstance(enc.model[-1], nn.Tanh)
    image = torch.randn(1, 3, 16, 16)
    inst = (torch.arange(16) // 4).view(1, 1, 1, 16).expand(1, 1, 16, 16)  # four vertical stripes
    enc(image, inst).square().sum().backward()
    assert convs[0].weight.grad is not None and convs[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple"):
        enc(torch.randn(1, 3, 18, 16), torch.zeros(1, 1, 18, 16, dtype=torch.long))
