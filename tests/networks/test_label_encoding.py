import pytest
import torch

from networks.label_encoding import instance_boundary_map, one_hot_labels


def test_instance_boundary_map_hand_example() -> None:
    ids = torch.tensor(
        [
            [1, 1, 2, 2, 2],
            [1, 1, 2, 2, 2],
            [3, 3, 3, 2, 2],
            [3, 3, 3, 3, 3],
        ]
    )
    expected = torch.tensor(
        [
            [0, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1],
            [0, 0, 0, 1, 1],
        ],
        dtype=torch.float32,
    )
    inst = torch.stack([ids, torch.full_like(ids, 26001)]).unsqueeze(1)  # second item: one instance
    edges = instance_boundary_map(inst)
    assert edges.shape == (2, 1, 4, 5) and edges.dtype == torch.float32
    torch.testing.assert_close(edges[0, 0], expected)
    assert edges[1].sum() == 0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_instance_boundary_map_dtypes_and_no_wraparound(dtype: torch.dtype) -> None:
    # left and right columns differ; a wrap-around comparison would mark column 0 and 2 as edges too
    inst = torch.tensor([[[[5, 5, 9]]]], dtype=dtype)
    torch.testing.assert_close(instance_boundary_map(inst), torch.tensor([[[[0.0, 1.0, 1.0]]]]))


def test_one_hot_labels_values() -> None:
    label = torch.tensor([[[[0, 2], [1, 2]]]], dtype=torch.int32)
    out = one_hot_labels(label, 4)
    assert out.shape == (1, 4, 2, 2) and out.dtype == torch.float32
    expected = torch.zeros(1, 4, 2, 2)
    expected[0, 0, 0, 0] = 1
    expected[0, 2, 0, 1] = 1
    expected[0, 1, 1, 0] = 1
    expected[0, 2, 1, 1] = 1
    torch.testing.assert_close(out, expected)
    assert out[:, 3].sum() == 0


def test_one_hot_labels_batch_roundtrip() -> None:
    label = torch.randint(0, 6, (3, 1, 8, 8))
    out = one_hot_labels(label, 6)
    torch.testing.assert_close(out.sum(1), torch.ones(3, 8, 8))
    assert torch.equal(out.argmax(1, keepdim=True), label)


def test_one_hot_labels_rejects_out_of_range_id() -> None:
    label = torch.tensor([[[[0, 1], [7, 2]]]])
    with pytest.raises(ValueError) as err:
        one_hot_labels(label, 3)
    msg = str(err.value)
    assert "7" in msg and "label_nc=3" in msg and "dontcare_id" in msg
    with pytest.raises(ValueError, match="-1"):
        one_hot_labels(torch.tensor([[[[-1, 0]]]]), 3)


def test_one_hot_labels_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        one_hot_labels(torch.tensor([[[[0.5, 1.0]]]]), 3)
    with pytest.raises(ValueError):
        one_hot_labels(torch.zeros(1, 2, 4, 4, dtype=torch.long), 3)
    # whole-number floats are accepted
    torch.testing.assert_close(
        one_hot_labels(torch.tensor([[[[1.0]]]]), 2), torch.tensor([[[[0.0]], [[1.0]]]])
    )
