import numpy as np
import pytest
import torch

from datamodules.pix2pixhd.instances import instance_class
from datamodules.pix2pixhd.synthetic import FIRST_OBJECT_CLASS, SyntheticScenesDataset
from datamodules.transforms import PairedTransform

LABEL_NC, STYLES = 8, 3


def _ds(**kw) -> SyntheticScenesDataset:
    args = {"num_samples": 48, "image_size": (48, 64), "label_nc": LABEL_NC, "num_styles": STYLES, "seed": 0}
    args.update(kw)
    return SyntheticScenesDataset(**args)


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("label", "inst", "image"))


def test_deterministic_in_seed_split_index():
    ds = _ds()
    assert _equal(ds[3], ds[3])
    assert _equal(ds[3], _ds()[3])
    assert not _equal(ds[3], ds[4])
    assert not _equal(ds[3], _ds(split="val")[3])
    assert not _equal(ds[3], _ds(seed=1)[3])
    assert ds[3]["path"] == "synthetic/train/00003" and _ds(split="val")[12]["path"] == "synthetic/val/00012"


def test_shapes_dtypes_and_ranges():
    ds = _ds()
    for i in range(6):
        s = ds[i]
        assert s["label"].shape == (1, 48, 64) and s["label"].dtype == torch.int64
        assert s["inst"].shape == (1, 48, 64) and s["inst"].dtype == torch.int64
        assert s["image"].shape == (3, 48, 64) and s["image"].dtype == torch.float32
        assert s["image"].min() >= -1 and s["image"].max() <= 1
        assert s["label"].min() >= 0 and s["label"].max() < LABEL_NC
    assert len(ds) == 48
    with pytest.raises(IndexError):
        ds[48]


def test_instance_ids_follow_cityscapes_convention():
    ds = _ds()
    n_objects = 0
    for i in range(10):
        s = ds[i]
        label, inst = s["label"], s["inst"]
        assert torch.equal(instance_class(inst), label)  # every pixel
        stuff = inst < 1000
        assert set(inst[stuff].unique().tolist()) <= {0, 1, 2}
        assert (label[~stuff] >= FIRST_OBJECT_CLASS).all()
        objects = inst[~stuff].unique().tolist()
        n_objects += len(objects)
        for c in {o // 1000 for o in objects}:
            ks = sorted(o % 1000 for o in objects if o // 1000 == c)
            assert ks == list(range(len(ks)))  # k = 0, 1, ... per class
    assert n_objects >= 10


def test_instance_styles_match_pixels():
    ds = _ds()
    for i in range(8):
        s = ds[i]
        styles = ds.generate(i)[2]
        inst = s["inst"][0]
        assert set(styles) == set(inst.unique().tolist())
        img = s["image"].permute(1, 2, 0).numpy()
        for iid, (c, m) in styles.items():
            assert c == int(instance_class(torch.tensor(iid)))
            pix = img[inst.numpy() == iid]  # [N, 3]
            dists = np.linalg.norm(pix[:, None, :] - ds.palette[c][None], axis=-1)  # [N, styles]
            assert (dists.argmin(1) == m).mean() > 0.99, (i, iid)
            mean_dists = np.linalg.norm(pix.mean(0)[None] - ds.palette[c], axis=-1)
            assert mean_dists.argmin() == m


def test_kmeans_on_instance_mean_colours_recovers_styles():
    from sklearn.cluster import KMeans

    ds = _ds(num_samples=40)
    feats: dict[int, list] = {}
    truth: dict[int, list] = {}
    for i in range(40):
        s = ds[i]
        inst, img = s["inst"][0].numpy(), s["image"].permute(1, 2, 0).numpy()
        for iid, (c, m) in ds.generate(i)[2].items():
            feats.setdefault(c, []).append(img[inst == iid].mean(0))
            truth.setdefault(c, []).append(m)
    checked = 0
    for c in feats:
        y = np.array(truth[c])
        if len(set(y.tolist())) < STYLES:
            continue
        pred = KMeans(n_clusters=STYLES, n_init=10, random_state=0).fit_predict(np.stack(feats[c]))
        purity = sum(np.bincount(y[pred == k]).max() for k in range(STYLES)) / len(y)
        assert purity > 0.9, (c, purity)
        checked += 1
    assert checked >= LABEL_NC - 1  # stuff and most object classes had all modes


def test_styles_are_used_uniformly_enough():
    ds = _ds()
    counts = np.zeros(STYLES)
    for i in range(20):
        for _, m in ds.generate(i)[2].values():
            counts[m] += 1
    assert counts.min() > 0.15 * counts.sum()


def test_use_instance_false_and_transform():
    s = _ds(use_instance=False)[0]
    assert torch.equal(s["inst"], s["label"])
    t = PairedTransform(load_size=(24, 32), crop_size=None, resize_mode="resize", flip=False)
    small = _ds(transform=t)[0]
    assert small["image"].shape == (3, 24, 32) and small["label"].shape == (1, 24, 32)
    assert torch.equal(instance_class(small["inst"]), small["label"])


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"label_nc": 4}, "label_nc"),
        ({"num_styles": 0}, "num_styles"),
        ({"image_size": (4, 64)}, "image_size"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"split": ""}, "split"),
    ],
)
def test_bad_arguments_fail_at_construction(kw, match):
    with pytest.raises(ValueError, match=match):
        _ds(**kw)
