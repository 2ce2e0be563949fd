"""task=cluster_features (pix2pixHD §3.4): per-class K-means, instance rows and filter, the task end to end."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from datamodules.pix2pixhd import SyntheticScenesDataset
from lightning_modules.checkpoints import safe_torch_load
from networks.pix2pixhd import instance_mean_features
from tasks.builders import build_datamodule
from tasks.config import ConfigError, validate_config
from tasks.inference import load_for_inference
from tasks.pix2pixhd.cluster_features import (
    centers_path,
    cluster_features,
    instance_classes,
    instance_feature_rows,
    kmeans_per_class,
)

# ------------------------------------------------------------------------------------------ kmeans_per_class


def _blobs(rng: np.random.Generator, means: list[list[float]], n: int) -> np.ndarray:
    return np.concatenate([np.asarray(m) + 0.01 * rng.standard_normal((n, len(m))) for m in means])


def test_kmeans_per_class_recovers_obvious_clusters() -> None:
    rng = np.random.default_rng(0)
    means = {0: [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], 2: [[-1.0, 0.5, 0.0], [0.5, -1.0, 0.8]]}
    feats = np.concatenate([_blobs(rng, means[0], 20), _blobs(rng, means[2], 15)]).astype(np.float32)
    classes = np.array([0] * 40 + [2] * 30)
    centers, counts = kmeans_per_class(feats, classes, label_nc=4, n_clusters=2, seed=0)
    assert centers.shape == (4, 2, 3) and counts.shape == (4,)
    assert counts.tolist() == [2, 0, 2, 0]
    for c, true_means in means.items():
        got = sorted(centers[c].tolist())
        want = sorted(true_means)
        np.testing.assert_allclose(got, want, atol=0.02)
    # classes 1 and 3 have no rows: count 0 and exactly zero centres
    assert not centers[[1, 3]].any()


def test_kmeans_per_class_fewer_rows_than_clusters_and_duplicates() -> None:
    feats = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 5.0], [5.0, 5.0], [5.0, 5.0]], dtype=np.float32)
    classes = np.array([1, 1, 2, 2, 2])
    centers, counts = kmeans_per_class(feats, classes, label_nc=3, n_clusters=4, seed=0)
    assert counts.tolist() == [0, 2, 1]  # class 2: three identical rows = one distinct centre
    assert sorted(centers[1, :2].tolist()) == [[1.0, 2.0], [3.0, 4.0]]
    np.testing.assert_array_equal(centers[2, 0], [5.0, 5.0])
    assert not centers[1, 2:].any() and not centers[2, 1:].any() and not centers[0].any()


def test_kmeans_per_class_is_seeded_and_validates() -> None:
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((60, 3))
    classes = rng.integers(0, 2, 60)
    a = kmeans_per_class(feats, classes, 2, 5, seed=3)
    b = kmeans_per_class(feats, classes, 2, 5, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    empty = kmeans_per_class(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), 2, 5, seed=0)
    assert empty[0].shape == (2, 5, 3) and not empty[0].any() and not empty[1].any()
    with pytest.raises(ValueError, match="label_nc"):
        kmeans_per_class(feats, classes + 5, 2, 5, seed=0)
    with pytest.raises(ValueError, match="one class per row"):
        kmeans_per_class(feats, classes[:10], 2, 5, seed=0)


# ------------------------------------------------------------------------------------- instance rows / filter


def test_instance_classes_come_from_the_label_map() -> None:
    # ids follow no class arithmetic: id 7 is class 2, id 1000 is class 1, id 5 spans classes 0 and 3
    inst = torch.tensor([[7, 7, 1000, 5], [7, 1000, 1000, 5]]).view(1, 1, 2, 4)
    label = torch.tensor([[2, 2, 1, 0], [2, 1, 1, 3]]).view(1, 1, 2, 4)
    b, ids, _, _ = instance_mean_features(torch.zeros(1, 1, 2, 4), inst)
    cls, mixed = instance_classes(label, inst, b, ids)
    got = dict(zip(ids.tolist(), zip(cls.tolist(), mixed.tolist(), strict=True), strict=True))
    assert got == {5: (3, True), 7: (2, False), 1000: (1, False)}


def test_instance_rows_small_object_filter_and_batches() -> None:
    # 8x8 map, area_blocks=32 -> 2 px per block; min_area_ratio=1.5 -> kept iff pixel count > 3
    inst = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    inst[0, 0, 0, :3] = 4  # 3 px: dropped
    inst[0, 0, 1, :4] = 9  # 4 px: kept
    inst[1, 0, :2, :] = 4  # 16 px in the second image: kept
    label = torch.where(inst == 0, 0, 5)
    feats = torch.arange(2 * 2 * 64, dtype=torch.float32).view(2, 2, 8, 8)
    rows = instance_feature_rows(feats, label, inst, area_blocks=32, min_area_ratio=1.5)
    got = sorted(zip(rows.batch_index.tolist(), rows.instance_ids.tolist(), rows.pixel_counts.tolist(),
                     rows.classes.tolist(), strict=True))
    assert got == [(0, 0, 57, 0), (0, 9, 4, 5), (1, 0, 48, 0), (1, 4, 16, 5)]
    assert rows.dropped == 1
    i = [k for k, (bi, ii) in enumerate(zip(rows.batch_index, rows.instance_ids, strict=True)) if (bi, ii) == (0, 9)][0]
    np.testing.assert_allclose(rows.features[i], [feats[0, 0, 1, :4].mean(), feats[0, 1, 1, :4].mean()])


def test_kmeans_recovers_the_synthetic_appearance_modes() -> None:
    """Per-instance mean RGB of the *real* image, through the task's extraction/filter and kmeans_per_class,
    clusters the synthetic instances by their ground-truth appearance mode. The RGB mean stands in for E's
    features: an untrained encoder cannot be expected to separate styles, the clustering path can be checked."""
    ds = SyntheticScenesDataset(num_samples=40, image_size=(64, 64), label_nc=8, num_styles=3, seed=0)
    feats, classes, styles = [], [], []
    for i in range(len(ds)):
        s = ds[i]
        rows = instance_feature_rows(s["image"][None], s["label"][None], s["inst"][None], 32, 0.5)
        truth = ds.generate(i)[2]
        assert all(truth[int(k)][0] == c for k, c in zip(rows.instance_ids, rows.classes, strict=True))
        feats.append(rows.features)
        classes.append(rows.classes)
        styles.append(np.array([truth[int(k)][1] for k in rows.instance_ids]))
    f, c, s = np.concatenate(feats), np.concatenate(classes), np.concatenate(styles)
    assert len(c) > 150
    centers, counts = kmeans_per_class(f, c, label_nc=8, n_clusters=3, seed=0)
    assert counts.tolist() == [3] * 8
    majority = 0
    for cls in range(8):
        m = c == cls
        assign = ((f[m][:, None] - centers[cls][None]) ** 2).sum(-1).argmin(1)
        for k in range(3):
            in_k = s[m][assign == k]
            majority += np.bincount(in_k).max() if in_k.size else 0
    purity = majority / len(c)
    assert purity > 0.9, f"cluster purity {purity:.3f} (chance ~1/3)"


# ------------------------------------------------------------------------------------------------ the task


def _expected_rows(cfg, min_area_ratio: float, max_samples: int | None = None) -> np.ndarray:
    """Kept instances per class, counted independently with numpy (pixel counts do not depend on flips)."""
    dm = build_datamodule(cfg)
    dm.setup("fit")
    n = len(dm.train_set) if max_samples is None else max_samples
    rows = np.zeros(int(cfg.model.label_nc), dtype=np.int64)
    for i in range(n):
        s = dm.train_set[i]
        inst, label = s["inst"][0].numpy(), s["label"][0].numpy()
        threshold = min_area_ratio * inst.size / 32
        for iid, cnt in zip(*np.unique(inst, return_counts=True), strict=True):
            classes = np.unique(label[inst == iid])
            assert len(classes) == 1
            rows[classes[0]] += int(cnt > threshold)
    return rows


@pytest.fixture(scope="module")
def clustered(trained_ckpt: str, tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import compose_config

    cfg = compose_config(["task=cluster_features", f"task.ckpt_path={trained_ckpt}"],
                         tmp_path_factory.mktemp("cluster"))
    validate_config(cfg)
    torch.manual_seed(0)  # the datamodule's random flips draw from torch's global generator: a flip would show
    out = cluster_features(cfg)
    return cfg, out


def test_cluster_task_writes_a_clustered_checkpoint(clustered, trained_ckpt: str) -> None:
    cfg, out = clustered
    assert out == os.path.join(os.path.dirname(trained_ckpt), "last_clustered.ckpt")
    assert os.path.isfile(out) and not os.path.exists(out + ".tmp")
    src = safe_torch_load(trained_ckpt)
    new = safe_torch_load(out)
    assert int(src["state_dict"]["feature_center_counts"].sum()) == 0  # the input is left untouched
    counts = new["state_dict"]["feature_center_counts"]
    centers = new["state_dict"]["feature_centers"]
    rows = _expected_rows(cfg, 0.5)
    assert rows[:2].min() > 0  # sky and ground are in every scene
    n_clusters = int(cfg.model.n_clusters)
    assert counts.tolist() == np.minimum(rows, n_clusters).tolist()
    assert new["condsynth"]["feature_clusters"]["rows_per_class"] == rows.tolist()
    for c in range(centers.shape[0]):
        k = int(counts[c])
        assert not centers[c, k:].any()
        if k:
            assert centers[c, :k].abs().sum(-1).min() > 0
    # everything else is the input checkpoint
    for key, value in src["state_dict"].items():
        if not key.startswith("feature_center"):
            assert torch.equal(value, new["state_dict"][key]), key
    assert new["condsynth"]["stage"] == src["condsynth"]["stage"]
    bank = torch.load(centers_path(out), map_location="cpu")
    assert torch.equal(bank["centers"], centers) and torch.equal(bank["counts"], counts)


def test_centres_are_the_encoder_features_of_the_unflipped_train_images(clustered, trained_ckpt: str) -> None:
    """With at most n_clusters rows per class (4 tiny images), every row is a centre: recompute the rows with E
    on the train split loaded without flips (dataset.flip=false) and compare per class."""
    from tests.conftest import compose_config

    cfg, out = clustered
    plain = compose_config(["task=cluster_features", f"task.ckpt_path={trained_ckpt}", "dataset.flip=false"],
                           cfg.paths.run_dir)
    module = load_for_inference(plain, trained_ckpt)
    dm = build_datamodule(plain)
    dm.setup("fit")
    per_class: dict[int, list[list[float]]] = {}
    with torch.no_grad():
        for i in range(len(dm.train_set)):
            s = dm.train_set[i]
            feats = module.netE(s["image"][None], s["inst"][None])
            _, ids, means, counts = instance_mean_features(feats, s["inst"][None])
            for iid, m, n in zip(ids.tolist(), means.tolist(), counts.tolist(), strict=True):
                if n > 0.5 * feats.shape[-1] * feats.shape[-2] / 32:
                    per_class.setdefault(int(s["label"][0][s["inst"][0] == iid][0]), []).append(m)
    bank = safe_torch_load(out)["state_dict"]
    assert len(per_class) >= 3
    for c, rows in per_class.items():
        assert len(rows) <= int(cfg.model.n_clusters)
        k = int(bank["feature_center_counts"][c])
        got = sorted(bank["feature_centers"][c, :k].tolist())
        np.testing.assert_allclose(got, sorted(rows), atol=1e-5)


def test_clustered_checkpoint_generates_deterministically(clustered) -> None:
    cfg, out = clustered
    module = load_for_inference(cfg, out)
    assert int(module.feature_center_counts.sum()) > 0
    dm = build_datamodule(cfg)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    a = module.generate(batch, "cluster", cluster_index=0)
    b = module.generate(batch, "cluster", cluster_index=0)
    assert torch.equal(a, b)
    r1 = module.generate(batch, "random", generator=torch.Generator().manual_seed(5))
    r2 = module.generate(batch, "random", generator=torch.Generator().manual_seed(5))
    assert torch.equal(r1, r2)
    # cluster 0 paints centre 0 of each instance's class
    feats = module.instance_features(batch["label"], batch["inst"], mode="cluster", cluster_index=0)
    label = batch["label"][0, 0]
    for c in label.unique().tolist():
        pix = (label == c).nonzero()[0]
        torch.testing.assert_close(feats[0, :, pix[0], pix[1]], module.feature_centers[c, 0])
    # random draws over seeds pick different centres (sky/ground have several centres)
    draws = [module.instance_features(batch["label"], batch["inst"], mode="random",
                                      generator=torch.Generator().manual_seed(s)) for s in range(10)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_classes_without_centres_get_zero_features(trained_ckpt: str, tmp_path) -> None:
    """A strict filter (instances > 4 * H*W/32 px) on 2 images leaves some classes without rows."""
    from tests.conftest import compose_config

    out_path = str(tmp_path / "bank.ckpt")
    cfg = compose_config(["task=cluster_features", f"task.ckpt_path={trained_ckpt}", "task.min_area_ratio=4",
                          "task.max_samples=2", f"task.output={out_path}"], tmp_path / "run")
    assert cluster_features(cfg) == out_path
    assert os.path.isfile(str(tmp_path / "bank.centers.pt"))
    rows = _expected_rows(cfg, 4.0, max_samples=2)
    empty = [c for c in range(len(rows)) if rows[c] == 0]
    full = [c for c in range(len(rows)) if rows[c] > 0]
    assert empty and full
    module = load_for_inference(cfg, out_path)
    assert safe_torch_load(out_path)["condsynth"]["feature_clusters"]["images"] == 2
    assert module.feature_center_counts.tolist() == np.minimum(rows, int(cfg.model.n_clusters)).tolist()
    label = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    label[..., :8] = empty[0]
    label[..., 8:] = full[0]
    inst = label.clone()
    feats = module.instance_features(label, inst, mode="random", generator=torch.Generator().manual_seed(0))
    assert not feats[..., :8].any()
    right = feats[0, :, 0, 8]
    k = int(module.feature_center_counts[full[0]])
    assert right.abs().sum() > 0
    assert any(torch.allclose(right, module.feature_centers[full[0], j]) for j in range(k))


def test_cluster_task_rejects_a_missing_checkpoint(make_config, tmp_path) -> None:
    missing = str(tmp_path / "nope" / "last.ckpt")
    cfg = make_config("task=cluster_features", f"task.ckpt_path={missing}")
    with pytest.raises(ConfigError, match=missing):
        validate_config(cfg)
    with pytest.raises(FileNotFoundError, match=missing):
        cluster_features(cfg)
