import logging
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datamodules.pix2pixhd.instances import instance_class, make_instance_id
from datamodules.transforms import (
    PairedTransform,
    check_label_ids,
    fit_to_stride,
    image_to_tensor,
    read_image,
    read_label_map,
    resize_nearest,
)

from ._fakes import PALETTE, fake_scene, write_png


def _sample(seed: int = 0, size=(48, 64)) -> dict:
    label, inst, image = fake_scene(seed, size)
    return {
        "label": torch.from_numpy(label.astype(np.int64))[None],
        "inst": torch.from_numpy(inst.astype(np.int64))[None],
        "image": torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1,
        "path": "x.png",
    }


def _photo_of(label: torch.Tensor) -> torch.Tensor:
    """The image the fake scene pairs with ``label`` ([1,H,W] -> [3,H,W] in [-1, 1])."""
    return torch.from_numpy(PALETTE[label[0].numpy()]).permute(2, 0, 1).float() / 127.5 - 1


def test_fit_to_stride_rounds_to_nearest_multiple():
    assert fit_to_stride((64, 64), 16) == (64, 64)
    assert fit_to_stride((50, 70), 16) == (48, 64)
    assert fit_to_stride((56, 72), 16) == (64, 80)  # halves round up
    assert fit_to_stride((5, 9), 16) == (16, 16)  # at least one multiple
    assert fit_to_stride((50, 70), 16, mode="crop") == (48, 64)
    assert fit_to_stride((50, 70), 16, mode="pad") == (64, 80)
    assert fit_to_stride((37, 41), 1) == (37, 41)
    with pytest.raises(ValueError, match="multiple"):
        fit_to_stride((64, 64), 0)
    with pytest.raises(ValueError, match="mode"):
        fit_to_stride((64, 64), 16, mode="stretch")


@pytest.mark.parametrize("src,dst", [((64, 64), (32, 32)), ((48, 64), (40, 24)), ((30, 50), (64, 96))])
def test_resize_nearest_is_exact_and_matches_nearest_exact(src, dst):
    ids = torch.randint(0, 40000, src, generator=torch.Generator().manual_seed(0)).long()[None]
    out = resize_nearest(ids, dst)
    assert out.dtype == torch.int64 and out.shape == (1, *dst)
    assert set(out.unique().tolist()) <= set(ids.unique().tolist())
    ref = F.interpolate(ids[None].double(), size=dst, mode="nearest-exact")[0].long()
    assert torch.equal(out, ref)


def test_flip_is_applied_identically_to_label_inst_and_image():
    sample = _sample()
    transform = PairedTransform(load_size=None, crop_size=None, resize_mode="none", flip=True)
    seen = set()
    for seed in range(12):
        out = transform(sample, torch.Generator().manual_seed(seed))
        flipped = torch.equal(out["label"], sample["label"].flip(-1))
        seen.add(flipped)
        ref = {k: (v.flip(-1) if flipped else v) for k, v in sample.items() if k != "path"}
        for key in ("label", "inst", "image"):
            assert torch.equal(out[key], ref[key]), key
        assert torch.equal(out["image"], _photo_of(out["label"]))
        assert out["path"] == "x.png"
    assert seen == {True, False}  # the fake scene is asymmetric, both outcomes occur


def test_random_crop_is_shared_and_sized():
    sample = _sample()
    transform = PairedTransform(load_size=None, crop_size=(32, 40), resize_mode="crop", flip=False)
    rng = random.Random(3)
    tops = set()
    for _ in range(6):
        params = transform.get_params((48, 64), rng)
        out = transform.apply_params(sample, params)
        top, left, ch, cw = params.crop
        tops.add((top, left))
        assert out["label"].shape == (1, 32, 40) and out["image"].shape == (3, 32, 40)
        assert torch.equal(out["label"], sample["label"][..., top : top + 32, left : left + 40])
        assert torch.equal(out["inst"], sample["inst"][..., top : top + 32, left : left + 40])
        assert torch.equal(out["image"], _photo_of(out["label"]))  # photo crop aligned with label crop
    assert len(tops) > 1


def test_resize_and_crop_and_scale_width_sizes():
    sample = _sample()
    t = PairedTransform(load_size=(40, 48), crop_size=(32, 32), resize_mode="resize_and_crop")
    out = t(sample)
    assert out["label"].shape == (1, 32, 32) and out["image"].shape == (3, 32, 32)
    assert out["image"].min() >= -1 and out["image"].max() <= 1
    t = PairedTransform(load_size=32, crop_size=None, resize_mode="scale_width", flip=False)
    assert t(sample)["image"].shape == (3, 24, 32)  # 48x64 -> width 32 keeps the aspect ratio
    t = PairedTransform(load_size=32, crop_size=(16, 16), resize_mode="scale_width_and_crop", flip=False)
    assert t(sample)["label"].shape == (1, 16, 16)


def test_resize_preserves_label_values_and_instance_ids():
    sample = _sample()
    out = PairedTransform(load_size=(24, 32), crop_size=None, resize_mode="resize", flip=False)(sample)
    assert set(out["label"].unique().tolist()) <= set(sample["label"].unique().tolist())
    assert set(out["inst"].unique().tolist()) <= set(sample["inst"].unique().tolist())
    assert torch.equal(instance_class(out["inst"]), out["label"])  # label/inst stay pixel-aligned


def test_deterministic_without_flip_and_crop():
    sample = _sample()
    t = PairedTransform(load_size=(32, 32), crop_size=None, resize_mode="resize", flip=False)
    a, b = t(sample, torch.Generator().manual_seed(0)), t(sample, torch.Generator().manual_seed(1))
    for key in ("label", "inst", "image"):
        assert torch.equal(a[key], b[key])


def test_size_not_fitting_stride_is_resized_with_one_warning(caplog):
    t = PairedTransform(load_size=(40, 40), crop_size=None, resize_mode="resize", flip=False, size_multiple=16)
    with caplog.at_level(logging.WARNING, logger="datamodules.transforms"):
        outs = [t(_sample(seed)) for seed in range(3)]
    assert all(o["label"].shape == (1, 48, 48) and o["image"].shape == (3, 48, 48) for o in outs)
    msgs = [r.getMessage() for r in caplog.records if "stride" in r.getMessage()]
    assert msgs == ["image size 40x40 does not fit the generator's total stride 16; resizing to 48x48"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"load_size": 32, "crop_size": None, "resize_mode": "zoom"}, "resize_mode"),
        ({"load_size": 32, "crop_size": (48, 48), "resize_mode": "resize_and_crop"}, "larger than load_size"),
        ({"load_size": None, "crop_size": (8, 8), "resize_mode": "resize_and_crop"}, "needs load_size"),
        ({"load_size": 32, "crop_size": (8, 8), "resize_mode": "resize"}, "crop_size"),
        ({"load_size": (32, 32), "crop_size": None, "resize_mode": "scale_width"}, "target width"),
        ({"load_size": 32, "crop_size": None, "resize_mode": "resize", "size_multiple": 0}, "multiple"),
    ],
)
def test_bad_transform_config_fails_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PairedTransform(**kwargs)


def test_crop_larger_than_input_names_sizes():
    t = PairedTransform(load_size=None, crop_size=(64, 64), resize_mode="crop")
    with pytest.raises(ValueError, match="crop_size 64x64 is larger than the resized image 48x64"):
        t(_sample())


def test_read_label_map_keeps_16bit_values(tmp_path):
    arr = np.array([[0, 7, 26001], [24000, 65535, 33]], dtype=np.uint16)
    out = read_label_map(write_png(tmp_path / "inst.png", arr))
    assert out.dtype == np.int64 and np.array_equal(out, arr.astype(np.int64))


def test_read_label_map_rejects_rgb(tmp_path):
    path = write_png(tmp_path / "colour_label.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="colour_label.png.*single-channel"):
        read_label_map(path)


def test_read_image_corrupt_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(ValueError, match=r"could not read image .*broken.png.*corrupt.*replace or remove it"):
        read_image(str(path))
    with pytest.raises(ValueError, match="broken.png"):
        read_label_map(str(path))


def test_truncated_png_is_reported(tmp_path):
    path = write_png(tmp_path / "cut.png", np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype(np.uint8))
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"could not read image .*cut.png"):
        read_image(path)


def test_image_to_tensor_range(tmp_path):
    arr = np.zeros((2, 3, 3), np.uint8)
    arr[0, 0] = 255
    t = image_to_tensor(read_image(write_png(tmp_path / "im.png", arr)))
    assert t.dtype == torch.float32 and t.shape == (3, 2, 3)
    assert t[:, 0, 0].tolist() == [1.0, 1.0, 1.0] and t[:, 1, 1].tolist() == [-1.0, -1.0, -1.0]


def test_check_label_ids_raises_or_maps_to_dontcare():
    label = np.array([[0, 3], [40, 2]], dtype=np.int64)
    with pytest.raises(ValueError, match=r"a/b\.png.*id 40.*label_nc=35.*dontcare_id"):
        check_label_ids(label, 35, "a/b.png", None)
    mapped = check_label_ids(label, 35, "a/b.png", 0)
    assert mapped.tolist() == [[0, 3], [0, 2]]
    assert label[1, 0] == 40  # input untouched
    assert check_label_ids(label, 41, "a/b.png", None) is label


def test_instance_class_tensor_and_numpy():
    ids = torch.tensor([0, 7, 26001, 24000, 999, 1000])
    assert instance_class(ids).tolist() == [0, 7, 26, 24, 999, 1]
    assert instance_class(ids.numpy()).tolist() == [0, 7, 26, 24, 999, 1]
    assert make_instance_id(26, 1) == 26001
    with pytest.raises(ValueError):
        make_instance_id(3, 1000)
