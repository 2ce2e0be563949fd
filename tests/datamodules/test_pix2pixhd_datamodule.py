import logging

import numpy as np
import pytest
import torch

from datamodules.pix2pixhd import Pix2PixHDDataModule
from datamodules.pix2pixhd.instances import instance_class

from ._fakes import make_cityscapes_tree, make_pix2pixhd_tree, write_png


def _check_batch(batch: dict, b: int, hw: tuple[int, int], with_image: bool = True) -> None:
    assert batch["label"].shape == (b, 1, *hw) and batch["label"].dtype == torch.int64
    assert batch["inst"].shape == (b, 1, *hw) and batch["inst"].dtype == torch.int64
    assert torch.equal(instance_class(batch["inst"]), batch["label"])
    assert isinstance(batch["path"], list) and len(batch["path"]) == b
    if with_image:
        assert batch["image"].shape == (b, 3, *hw) and batch["image"].dtype == torch.float32
        assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    else:
        assert "image" not in batch


@pytest.mark.parametrize("scale,hw", [(1.0, (64, 96)), (0.5, (32, 48))])
def test_synthetic_all_loaders(scale, hw):
    dm = Pix2PixHDDataModule(
        image_size=(64, 96), scale=scale, batch_size=2, num_train=4, num_val=2, num_test=2, size_multiple=16
    )
    assert dm.train_size == hw
    dm.setup("fit")
    dm.setup("test")
    _check_batch(next(iter(dm.train_dataloader())), 2, hw)
    val = next(iter(dm.val_dataloader()))
    _check_batch(val, 2, hw)
    _check_batch(next(iter(dm.test_dataloader())), 2, hw)
    assert val["path"] == ["synthetic/val/00000", "synthetic/val/00001"]
    for _ in range(4):  # eval samples are never randomly flipped
        again = next(iter(dm.val_dataloader()))
        assert torch.equal(again["image"], val["image"]) and torch.equal(again["label"], val["label"])
    assert len(dm.train_set) == 4 and len(dm.val_set) == 2 and len(dm.test_set) == 2
    assert not torch.equal(dm.val_set[0]["image"], dm.test_set[0]["image"])


def test_training_size_is_fitted_to_stride_with_warning(caplog):
    with caplog.at_level(logging.WARNING):
        dm = Pix2PixHDDataModule(image_size=(50, 70), size_multiple=16, num_train=2)
    assert dm.train_size == (48, 64)
    assert "image size 50x70 does not fit the generator's total stride 16; resizing to 48x64" in caplog.text
    dm.setup("fit")
    assert dm.train_set[0]["image"].shape == (3, 48, 64)


def test_door_checks():
    with pytest.raises(ValueError, match=r"'imagenet' is unknown.*synthetic_scenes.*pix2pixhd_folders.*cityscapes"):
        Pix2PixHDDataModule(dataset="imagenet")
    with pytest.raises(ValueError, match="dontcare_id=8"):
        Pix2PixHDDataModule(label_nc=8, dontcare_id=8)
    with pytest.raises(ValueError, match="dataset.root"):
        Pix2PixHDDataModule(dataset="cityscapes")
    with pytest.raises(ValueError, match="resize_mode"):
        Pix2PixHDDataModule(resize_mode="stretch")
    with pytest.raises(ValueError, match="load_size"):
        Pix2PixHDDataModule(resize_mode="resize_and_crop")
    with pytest.raises(ValueError, match="scale"):
        Pix2PixHDDataModule(scale=0.0)
    with pytest.raises(ValueError, match="label_nc"):
        Pix2PixHDDataModule(label_nc=3)


def test_predict_loader(tmp_path):
    dm = Pix2PixHDDataModule(num_train=2)
    with pytest.raises(ValueError, match=r"set dataset.predict_label_dir=<folder of label maps>"):
        dm.predict_dataloader()
    for i in range(3):
        write_png(tmp_path / "labels" / f"{i}.png", np.full((40, 40), i, np.uint8))
    dm = Pix2PixHDDataModule(predict_label_dir=str(tmp_path / "labels"), batch_size=2, use_instance=False)
    batch = next(iter(dm.predict_dataloader()))
    _check_batch(batch, 2, (64, 64), with_image=False)
    assert batch["label"][1].unique().tolist() == [1]


def test_folders_val_falls_back_to_train_samples(tmp_path, caplog):
    recs = make_pix2pixhd_tree(tmp_path, "train", n=3)
    dm = Pix2PixHDDataModule(
        dataset="pix2pixhd_folders", root=str(tmp_path), image_size=(48, 64), scale=0.5, num_val=2,
        num_train=None, size_multiple=8, flip=True,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="datamodules.pix2pixhd.datamodule"):
        dm.setup("fit")
    assert "using the first 2 train samples" in caplog.text
    assert len(dm.train_set) == 3 and len(dm.val_set) == 2
    _check_batch(next(iter(dm.train_dataloader())), 1, (24, 32))
    expected = recs[0]["label"][1::2, 1::2]  # nearest 48x64 -> 24x32, never flipped in validation
    for _ in range(6):
        val = next(iter(dm.val_dataloader()))
        _check_batch(val, 1, (24, 32))
        assert np.array_equal(val["label"][0, 0].numpy(), expected)


def test_folders_val_uses_test_phase_and_caps(tmp_path, caplog):
    make_pix2pixhd_tree(tmp_path, "train", n=3)
    make_pix2pixhd_tree(tmp_path, "test", n=2)
    dm = Pix2PixHDDataModule(
        dataset="pix2pixhd_folders", root=str(tmp_path), image_size=(48, 64), size_multiple=16, num_train=2
    )
    with caplog.at_level(logging.INFO):
        dm.setup(None)
    assert "using only 2 of 3 train samples" in caplog.text
    assert "using phase 'test'" in caplog.text
    assert all("test_label" in dm.val_set[i]["path"] for i in range(len(dm.val_set)))
    assert "test_label" in dm.test_set[0]["path"]
    _check_batch(next(iter(dm.test_dataloader())), 1, (48, 64))


def test_cityscapes_datamodule_test_uses_val(tmp_path):
    make_cityscapes_tree(tmp_path, "train")
    make_cityscapes_tree(tmp_path, "val", cities=("frankfurt",))
    dm = Pix2PixHDDataModule(
        dataset="cityscapes", root=str(tmp_path), label_nc=35, image_size=(32, 64), scale=0.5,
        size_multiple=16, batch_size=2, num_train=None, num_val=None, num_test=None,
    )  # fmt: skip
    dm.setup("fit")
    dm.setup("test")
    _check_batch(next(iter(dm.train_dataloader())), 2, (16, 32))
    _check_batch(next(iter(dm.val_dataloader())), 1, (16, 32))
    test = next(iter(dm.test_dataloader()))
    assert "gtFine/val/frankfurt" in test["path"][0]
    assert test["inst"].max() >= 24000  # 16-bit instance ids survive resizing and collation


def test_workers_are_persistent_for_training():
    dm = Pix2PixHDDataModule(num_train=2, num_workers=1)
    loader = dm.train_dataloader()
    assert loader.persistent_workers and loader.num_workers == 1
    assert Pix2PixHDDataModule(num_train=2).train_dataloader().persistent_workers is False


def test_training_size_helper_matches_property():
    from datamodules.transforms import training_size

    assert training_size((64, 96), 0.5, 16) == (32, 48)
    assert training_size((25, 25), 0.5, 1) == (13, 13)  # 12.5 rounds half up
    assert training_size((100, 200), 0.5, 16) == (48, 96)
    dm = Pix2PixHDDataModule(image_size=(100, 200), scale=0.5, size_multiple=16, num_train=1)
    assert dm.train_size == training_size((100, 200), 0.5, 16)


def test_crop_and_scale_width_modes(tmp_path):
    make_pix2pixhd_tree(tmp_path, "train", n=2, size=(48, 96))
    common = {"dataset": "pix2pixhd_folders", "root": str(tmp_path), "label_nc": 8, "num_train": None}
    dm = Pix2PixHDDataModule(
        **common, image_size=(32, 32), scale=0.5, load_size=(48, 96), resize_mode="resize_and_crop",
        size_multiple=8,
    )  # fmt: skip
    assert dm.train_transform.load_size == (24, 48) and dm.train_transform.crop_size == (16, 16)
    dm.setup("fit")
    _check_batch(next(iter(dm.train_dataloader())), 1, (16, 16))
    dm = Pix2PixHDDataModule(**common, image_size=(48, 96), load_size=64, resize_mode="scale_width", size_multiple=8)
    dm.setup("fit")
    _check_batch(next(iter(dm.train_dataloader())), 1, (32, 64))
    with pytest.raises(ValueError, match="load_size"):
        Pix2PixHDDataModule(**common, load_size=[64, 64], resize_mode="scale_width")
    with pytest.raises(ValueError, match="load_size.*unused"):
        Pix2PixHDDataModule(**common, load_size=64, resize_mode="resize")


def test_instantiates_from_the_hydra_dataset_config(make_config):
    """The datamodule accepts every key of the lead's dataset config (as build_datamodule passes them)."""
    from tasks.builders import build_datamodule

    cfg = make_config("dataset.num_train=2")
    dm = build_datamodule(cfg)
    assert isinstance(dm, Pix2PixHDDataModule)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    _check_batch(batch, cfg.dataset.batch_size, dm.train_size)
