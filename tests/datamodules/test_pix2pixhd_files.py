import os

import numpy as np
import pytest
import torch

from datamodules.pix2pixhd.cityscapes import CityscapesDataset
from datamodules.pix2pixhd.folders import Pix2PixHDFolderDataset
from datamodules.pix2pixhd.instances import instance_class
from datamodules.pix2pixhd.label_folder import LabelFolderDataset
from datamodules.transforms import PairedTransform

from ._fakes import PALETTE, make_cityscapes_tree, make_pix2pixhd_tree, write_png


def _photo(image_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image_u8).permute(2, 0, 1).float() / 127.5 - 1


def _nearest_ref(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Independent nearest-neighbour (pixel-centre) resize."""
    h, w = arr.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(int), w - 1)
    return arr[rows][:, cols]


# ----------------------------------------------------------------------------------- pix2pixHD folders
def test_folder_dataset_samples_are_exact(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "train", n=3)
    ds = Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)
    assert len(ds) == 3
    for i, rec in enumerate(recs):
        s = ds[i]
        assert s["path"] == rec["label_path"]
        assert s["label"].dtype == torch.int64 and s["label"].shape == (1, 48, 64)
        assert s["inst"].dtype == torch.int64 and s["inst"].shape == (1, 48, 64)
        assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 48, 64)
        assert np.array_equal(s["label"][0].numpy(), rec["label"])
        assert np.array_equal(s["inst"][0].numpy(), rec["inst"])
        assert {3000, 3001, 4000} <= set(s["inst"].unique().tolist())
        assert torch.equal(s["image"], _photo(rec["image"]))


def test_folder_dataset_resize_is_nearest_and_aligned(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "train", n=2)
    t = PairedTransform(load_size=(40, 24), crop_size=None, resize_mode="resize", flip=False)
    s = Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8, transform=t)[1]
    assert s["label"].shape == (1, 40, 24) and s["image"].shape == (3, 40, 24)
    assert np.array_equal(s["label"][0].numpy(), _nearest_ref(recs[1]["label"], (40, 24)))
    assert np.array_equal(s["inst"][0].numpy(), _nearest_ref(recs[1]["inst"].astype(np.int64), (40, 24)))


def test_folder_dataset_flip_is_shared(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "train", n=1)
    ds = Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8, transform=PairedTransform(None, None, "none"))
    label = torch.from_numpy(recs[0]["label"].astype(np.int64))[None]
    outcomes = set()
    for seed in range(10):
        torch.manual_seed(seed)  # random params are drawn per call from torch's global generator
        s = ds[0]
        flipped = torch.equal(s["label"], label.flip(-1))
        assert flipped or torch.equal(s["label"], label)
        outcomes.add(flipped)
        photo = _photo(recs[0]["image"])
        assert torch.equal(s["image"], photo.flip(-1) if flipped else photo)
        assert torch.equal(instance_class(s["inst"]), s["label"])
    assert outcomes == {True, False}


def test_folder_dataset_without_instances_or_images(tmp_path):
    make_pix2pixhd_tree(tmp_path, "train", n=2, with_inst=False)
    s = Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8, use_instance=False)[0]
    assert torch.equal(s["inst"], s["label"])
    with pytest.raises(FileNotFoundError, match="train_inst.*use_instance=false"):
        Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)
    for p in (tmp_path / "train_img").iterdir():
        p.unlink()
    (tmp_path / "train_img").rmdir()
    s = Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8, use_instance=False, require_images=False)[0]
    assert set(s) == {"label", "inst", "path"}


def test_folder_jpg_photos_are_matched(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "test", n=2)
    png = tmp_path / "test_img" / f"{recs[0]['stem']}.png"
    from PIL import Image

    Image.open(png).save(png.with_suffix(".jpg"), quality=95)
    png.unlink()
    ds = Pix2PixHDFolderDataset(str(tmp_path), "test", label_nc=8)
    assert ds.records[0].image.endswith(".jpg") and ds[0]["image"].shape == (3, 48, 64)


# ------------------------------------------------------------------------------------------ errors
def test_missing_root_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist.*train_label"):
        Pix2PixHDFolderDataset(str(tmp_path / "nowhere"), "train")
    make_pix2pixhd_tree(tmp_path, "train", n=1)
    with pytest.raises(FileNotFoundError, match=r"val_label does not exist"):
        Pix2PixHDFolderDataset(str(tmp_path), "val")
    (tmp_path / "empty_label").mkdir()
    with pytest.raises(ValueError, match="empty_label contains no .png"):
        Pix2PixHDFolderDataset(str(tmp_path), "empty", use_instance=False, require_images=False)


def test_label_without_image_or_instance(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "train", n=3)
    (tmp_path / "train_img" / f"{recs[1]['stem']}.png").unlink()
    with pytest.raises(ValueError, match=rf"{recs[1]['stem']}\.png has no matching photo"):
        Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)
    write_png(tmp_path / "train_img" / f"{recs[1]['stem']}.png", recs[1]["image"])
    (tmp_path / "train_inst" / f"{recs[2]['stem']}.png").unlink()
    with pytest.raises(ValueError, match=rf"{recs[2]['stem']}\.png has no matching instance map"):
        Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)


def test_corrupt_png_fails_at_construction(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "train", n=2)
    bad = tmp_path / "train_img" / f"{recs[1]['stem']}.png"
    bad.write_bytes(b"garbage, not an image" * 10)
    with pytest.raises(ValueError, match=rf"could not read image .*{bad.name}.*corrupt"):
        Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)
    # without the header check it fails when the sample is read, with the same message
    ds = Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8, check_files=False)
    with pytest.raises(ValueError, match=rf"could not read image .*{bad.name}"):
        ds[1]


def test_size_mismatch_names_both_files(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "train", n=1)
    write_png(tmp_path / "train_img" / f"{recs[0]['stem']}.png", np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r"train_img.*is 10x10 but its label map .*train_label.* is 48x64"):
        Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)


def test_label_id_out_of_range_and_dontcare(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "train", n=1)
    with pytest.raises(ValueError, match=rf"{recs[0]['stem']}\.png contains id 4 .*label_nc=4.*dontcare_id"):
        Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=4)[0]
    s = Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=4, dontcare_id=0)[0]
    expected = recs[0]["label"].astype(np.int64)
    expected[expected >= 4] = 0
    assert np.array_equal(s["label"][0].numpy(), expected)
    with pytest.raises(ValueError, match="dontcare_id=4"):
        Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=4, dontcare_id=4)


# -------------------------------------------------------------------------------------- cityscapes
def test_cityscapes_samples_keep_16bit_instances(tmp_path):
    recs = make_cityscapes_tree(tmp_path, "train")
    ds = CityscapesDataset(str(tmp_path), "train", label_nc=35)
    assert len(ds) == 2
    for i, rec in enumerate(recs):
        s = ds[i]
        assert s["path"] == rec["label_path"] and "gtFine_labelIds" in s["path"]
        assert np.array_equal(s["inst"][0].numpy(), rec["inst"])
        assert {26000, 26001, 24000} <= set(s["inst"].unique().tolist())
        assert torch.equal(instance_class(s["inst"]), s["label"])
        assert np.array_equal(s["label"][0].numpy(), rec["label"])
        assert torch.equal(s["image"], _photo(rec["image"]))


def test_cityscapes_crop_and_flip(tmp_path):
    recs = make_cityscapes_tree(tmp_path, "val")
    t = PairedTransform(load_size=(32, 48), crop_size=(16, 32), resize_mode="resize_and_crop", flip=True)
    ds = CityscapesDataset(str(tmp_path), "val", transform=t)
    raw = CityscapesDataset(str(tmp_path), "val")[0]
    ref = torch.from_numpy(_nearest_ref(recs[0]["label"].astype(np.int64), (32, 48)))
    flips = set()
    for seed in range(6):
        params = t.get_params((32, 64), torch.Generator().manual_seed(seed))
        flips.add(params.flip)
        s = t.apply_params(raw, params)
        top, left, _, _ = params.crop
        expected = ref[top : top + 16, left : left + 32]
        expected = expected.flip(-1) if params.flip else expected
        assert torch.equal(s["label"][0], expected)
        assert torch.equal(instance_class(s["inst"]), s["label"])
    assert flips == {True, False}
    assert ds[1]["image"].shape == (3, 16, 32) and ds[1]["inst"].shape == (1, 16, 32)


def test_cityscapes_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*gtFine/train/<city>"):
        CityscapesDataset(str(tmp_path / "missing"))
    recs = make_cityscapes_tree(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"gtFine/val does not exist"):
        CityscapesDataset(str(tmp_path), "val")
    os.remove(recs[1]["label_path"].replace("labelIds", "instanceIds"))
    with pytest.raises(ValueError, match=rf"{recs[1]['name']}_gtFine_labelIds.png has no matching instance map"):
        CityscapesDataset(str(tmp_path), "train")
    assert len(CityscapesDataset(str(tmp_path), "train", use_instance=False)) == 2
    photo = tmp_path / "leftImg8bit" / "train" / "aachen" / f"{recs[0]['name']}_leftImg8bit.png"
    photo.unlink()
    with pytest.raises(ValueError, match=rf"{recs[0]['name']}_gtFine_labelIds.png has no matching photo"):
        CityscapesDataset(str(tmp_path), "train", use_instance=False)
    write_png(photo, recs[0]["image"])
    with pytest.raises(ValueError, match="contains id 26 .*label_nc=20"):
        CityscapesDataset(str(tmp_path), "train", label_nc=20, use_instance=False)[0]


# ------------------------------------------------------------------------------------ label folder
def test_label_folder_dataset(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "test", n=2)
    ds = LabelFolderDataset(str(tmp_path / "test_label"), label_nc=8, inst_dir=str(tmp_path / "test_inst"))
    s = ds[1]
    assert set(s) == {"label", "inst", "path"}
    assert np.array_equal(s["inst"][0].numpy(), recs[1]["inst"])
    assert np.array_equal(s["label"][0].numpy(), recs[1]["label"])
    s = LabelFolderDataset(str(tmp_path / "test_label"), label_nc=8)[0]
    assert torch.equal(s["inst"], s["label"])
    (tmp_path / "test_inst" / f"{recs[0]['stem']}.png").unlink()
    with pytest.raises(ValueError, match=rf"{recs[0]['stem']}\.png has no matching instance map"):
        LabelFolderDataset(str(tmp_path / "test_label"), label_nc=8, inst_dir=str(tmp_path / "test_inst"))
    with pytest.raises(FileNotFoundError, match="predict_label_dir"):
        LabelFolderDataset(str(tmp_path / "nope"), label_nc=8)
    assert PALETTE.shape == (8, 3)


# --- start-up scan: every file decoded, one rule for bad files, cached ----------------------------------------
def test_truncated_png_is_found_at_start_up_and_skipped_by_the_one_rule(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "train", n=12)
    bad = tmp_path / "train_img" / f"{recs[3]['stem']}.png"
    bad.write_bytes(bad.read_bytes()[:-40])  # a valid header, pixel data cut short: only decoding finds it
    with pytest.warns(UserWarning, match=rf"skipping 1 of 12 samples .*{bad.name}"):
        ds = Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)
    assert len(ds) == 11 and all(recs[3]["stem"] not in r.label for r in ds.records)
    with pytest.raises(ValueError, match=r"1 of 12 samples are unusable, more than dataset.max_bad_fraction=0.05"):
        Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8, max_bad_fraction=0.05)


def test_out_of_range_label_ids_are_found_at_start_up(tmp_path):
    recs = make_pix2pixhd_tree(tmp_path, "train", n=2)
    label = recs[0]["label"].copy()
    label[0, 0] = 40
    write_png(tmp_path / "train_label" / f"{recs[0]['stem']}.png", label)
    with pytest.raises(ValueError, match=r"contains id 40 outside \[0, label_nc=8\).*raise dataset.label_nc"):
        Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)


def test_the_scan_is_cached_by_file_size_and_time(tmp_path, monkeypatch):
    from datamodules.paired_files import PairedFileDataset

    make_pix2pixhd_tree(tmp_path, "train", n=4)
    reads: list[str] = []
    original = PairedFileDataset._read
    monkeypatch.setattr(PairedFileDataset, "_read", lambda self, rec: reads.append(rec.label) or original(self, rec))
    Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)
    assert len(reads) == 4
    Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)
    assert len(reads) == 4, "a second scan of unchanged files decodes nothing"
    os.utime(tmp_path / "train_img" / "img_002.png", ns=(1, 1))  # a changed file is decoded again
    Pix2PixHDFolderDataset(str(tmp_path), "train", label_nc=8)
    assert len(reads) == 5
