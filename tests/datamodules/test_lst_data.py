"""LST (content, style) pairs: synthetic and folder data, transforms, determinism, folder errors, bad files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.lst import STYLE_KINDS, EpochPairSampler, StylePairDataModule, SyntheticImages
from datamodules.lst.synthetic import _rng, style_image


def _synthetic(**kw) -> StylePairDataModule:
    args = dict(load_size=24, crop_size=16, batch_size=2, num_train=6, num_val=3, num_test=2, seed=3)
    args.update(kw)
    dm = StylePairDataModule(**args)
    dm.setup("fit")
    return dm


def test_synthetic_pairs_shapes_ranges_and_batches() -> None:
    dm = _synthetic()
    sample = dm.train_set[0]
    assert set(sample) == {"content", "style", "content_path", "style_path"}
    for key in ("content", "style"):
        assert sample[key].shape == (3, 16, 16) and sample[key].dtype == torch.float32
        assert 0.0 <= float(sample[key].min()) and float(sample[key].max()) <= 1.0
        assert float(sample[key].std()) > 0.02  # not a flat image
    assert sample["content_path"] == "synthetic/content/train/00000"
    assert sample["style_path"].startswith("synthetic/style/train/")
    batch = next(iter(dm.train_dataloader()))
    assert batch["content"].shape == (2, 3, 16, 16) and batch["style"].shape == (2, 3, 16, 16)
    assert len(batch["content_path"]) == 2
    assert len(dm.train_set) == 6 and len(dm.val_set) == 3
    # validation batches are the same pairs every time; training batches change with the epoch
    val = [b["style_path"] for b in dm.val_dataloader()], [b["style_path"] for b in dm.val_dataloader()]
    assert val[0] == val[1]
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    first = [p for b in loader for p in zip(b["content_path"], b["style_path"], strict=True)]
    loader.sampler.set_epoch(1)
    second = [p for b in loader for p in zip(b["content_path"], b["style_path"], strict=True)]
    assert sorted(c for c, _ in first) == sorted(c for c, _ in second)  # every content once per epoch
    assert first != second


def test_synthetic_data_is_deterministic_by_seed() -> None:
    a, b, c = _synthetic(), _synthetic(), _synthetic(seed=4)
    for i in range(3):
        sa, sb = a.train_set[(i, 2)], b.train_set[(i, 2)]
        assert torch.equal(sa["content"], sb["content"]) and torch.equal(sa["style"], sb["style"])
        assert sa["style_path"] == sb["style_path"]
    assert not torch.equal(a.train_set[0]["content"], c.train_set[0]["content"])
    # validation pairs are fixed; training pairs change with the epoch
    assert a.val_set[1]["style_path"] == a.val_set[1]["style_path"]
    styles = {a.train_set[(0, e)]["style_path"] for e in range(6)}
    assert len(styles) > 1
    # the splits hold different images
    assert not torch.equal(a.train_set[0]["content"], a.val_set[0]["content"])


def test_eval_is_a_centre_crop_without_flip_and_train_flips() -> None:
    dm = _synthetic(num_val=2)
    full = SyntheticImages("content", 2, (24, 24), seed=3, split="val").image(1)
    assert torch.equal(dm.val_set[1]["content"], full[:, 4:20, 4:20])
    # train with load == crop: no crop freedom, so every sample is the image or its mirror, and both happen
    dm = _synthetic(load_size=16, crop_size=16)
    src = SyntheticImages("content", 6, (16, 16), seed=3, split="train").image(0)
    flipped = 0
    for epoch in range(12):
        got = dm.train_set[(0, epoch)]["content"]
        assert torch.equal(got, src) or torch.equal(got, src.flip(-1))
        flipped += int(torch.equal(got, src.flip(-1)))
    assert 0 < flipped < 12


def test_style_textures_cover_every_kind_and_differ() -> None:
    imgs = {kind: style_image(_rng(0, "style", "train", 0), 32, 32, kind)[0] for kind in STYLE_KINDS}
    for kind, img in imgs.items():
        assert img.shape == (3, 32, 32) and img.min() >= 0 and img.max() <= 1, kind
        assert img.std() > 0.03, f"{kind} texture is flat"
    means = np.stack([img.mean(axis=(1, 2)) for img in imgs.values()])
    assert np.ptp(means, axis=0).max() > 0.05  # palettes differ


def test_sampler_shuffles_by_epoch_deterministically() -> None:
    s = EpochPairSampler(8, seed=1)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(0)
    assert list(s) == e0
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(i for i, _ in e1) == list(range(8)) and all(e == 1 for _, e in e1)
    assert [i for i, _ in e0] != [i for i, _ in e1]
    assert [i for i, _ in EpochPairSampler(5, shuffle=False)] == [0, 1, 2, 3, 4]


def _write_images(folder, names, size=(40, 30)) -> None:
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(arr).save(path)


def _folders(tmp_path):
    content, style = tmp_path / "coco", tmp_path / "wikiart"
    _write_images(content, ["a.jpg", "b.png", "sub/c.jpeg"])
    _write_images(style, ["s1.png", "deep/er/s2.bmp", "s3.webp"], size=(20, 50))
    (content / "notes.txt").write_text("not an image")
    return content, style


def test_folder_pairs_recursive(tmp_path) -> None:
    content, style = _folders(tmp_path)
    dm = StylePairDataModule("coco_wikiart", str(content), str(style), load_size=20, crop_size=16, batch_size=2,
                             num_train=None, num_val=2, num_test=2)
    dm.setup("fit")
    assert len(dm.train_set) == 3  # a.jpg, b.png, sub/c.jpeg (recursive, .txt ignored)
    seen_styles = set()
    for epoch in range(8):
        for i in range(3):
            s = dm.train_set[(i, epoch)]
            assert s["content"].shape == (3, 16, 16) and s["style"].shape == (3, 16, 16)
            assert 0 <= float(s["content"].min()) and float(s["style"].max()) <= 1
            assert s["content_path"].startswith(str(content))
            seen_styles.add(os.path.relpath(s["style_path"], style))
    assert seen_styles == {"s1.png", os.path.join("deep", "er", "s2.bmp"), "s3.webp"}
    assert dm.skipped == 0
    # the shorter side becomes load_size: a 20x50 style image -> 20x50, centre crop 16x16 of that in val
    val = dm.val_set[0]
    img = np.asarray(Image.open(val["style_path"]).convert("RGB"), dtype=np.float32) / 255
    assert torch.allclose(val["style"], torch.from_numpy(img).permute(2, 0, 1)[:, 17:33, 2:18])


def test_missing_or_empty_folders_name_the_config_key(tmp_path) -> None:
    content, style = _folders(tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset.content_root"):
        StylePairDataModule("coco_wikiart", str(tmp_path / "nope"), str(style))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="dataset.style_root.*no images"):
        StylePairDataModule("coco_wikiart", str(content), str(empty))
    with pytest.raises(ValueError, match="dataset.style_root"):
        StylePairDataModule("coco_wikiart", str(content), None)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        StylePairDataModule(load_size=32, crop_size=20, size_multiple=8)
    with pytest.raises(ValueError, match="larger than dataset.load_size"):
        StylePairDataModule(load_size=16, crop_size=32)
    with pytest.raises(ValueError, match="image_size"):
        StylePairDataModule(load_size=32, crop_size=32, image_size=[16, 16])


def test_corrupt_image_is_skipped_with_a_warning_and_counted(tmp_path) -> None:
    content, style = _folders(tmp_path)
    (style / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    # one rule for bad files: 1 of 4 is more than the default 10%, so the run stops, naming the file
    with pytest.raises(ValueError, match=r"1 of 4 images .* more than dataset.max_bad_fraction=0.1 .*broken.jpg"):
        StylePairDataModule("coco_wikiart", str(content), str(style), load_size=20, crop_size=16,
                            num_train=None).setup("fit")
    with pytest.warns(UserWarning, match=r"skipping 1 of 4 images .*broken.jpg"):
        dm = StylePairDataModule("coco_wikiart", str(content), str(style), load_size=20, crop_size=16,
                                 num_train=None, max_bad_fraction=0.5)
        dm.setup("fit")
    assert dm.skipped == 1
    assert all(not s.endswith("broken.jpg") for s in dm._folder(str(style), "dataset.style_root").files)
    for epoch in range(6):
        assert not dm.train_set[(0, epoch)]["style_path"].endswith("broken.jpg")


def test_file_failing_at_load_time_falls_back_and_is_counted(tmp_path) -> None:
    content, style = _folders(tmp_path)
    for p in style.rglob("*"):
        if p.is_file():
            p.unlink()
    _write_images(style, ["ok.png"])
    (style / "aaa_truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    dm = StylePairDataModule("coco_wikiart", str(content), str(style), load_size=20, crop_size=16,
                             num_train=None, check_files=False)  # no probing: the failure happens when decoding
    with pytest.warns(UserWarning, match="aaa_truncated.png"):
        dm.setup("fit")  # reads one sample of each split
        paths = {dm.train_set[(i, e)]["style_path"] for i in range(3) for e in range(6)}
    assert {os.path.basename(p) for p in paths} == {"ok.png"}
    assert dm.skipped == 1
