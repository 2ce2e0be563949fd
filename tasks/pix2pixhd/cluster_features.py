"""task=cluster_features: pix2pixHD §3.4 feature bank (official ``precompute_feature_clusters.py``).

Every training image (in order, unflipped, batch 1) goes through the encoder E; each instance gives one row:
its instance-averaged feature, its class (the label at its pixels, the same rule the module uses when it paints
centres at inference) and its pixel count. Small objects are dropped as in the official code: an instance is
kept if ``pixel_count > min_area_ratio * (H * W / area_blocks)``. Per class, K-means with
``min(n_clusters, distinct rows)`` centres; the centres go into the module's ``feature_centers[c, :k]`` buffer
and ``feature_center_counts[c] = k`` (classes without rows keep count 0 = zero features).

The input checkpoint is copied with the updated buffers to ``task.output`` (default:
``<ckpt stem>_clustered.ckpt`` next to it), written atomically, plus ``<output stem>.centers.pt``
(``{"centers", "counts"}``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Subset

from datamodules.atomic_writes import atomic_torch_save
from lightning_modules.checkpoints import read_checkpoint, update_meta
from networks.pix2pixhd import instance_mean_features
from tasks.builders import build_datamodule
from tasks.inference import inference_device, load_for_inference, progress, require_checkpoint, to_device

log = logging.getLogger(__name__)


@dataclass
class InstanceRows:
    """One row per kept (image, instance): feature, class, instance id, batch index, pixel count."""

    features: np.ndarray  # [N, C] float32
    classes: np.ndarray  # [N] int64
    instance_ids: np.ndarray  # [N] int64
    batch_index: np.ndarray  # [N] int64
    pixel_counts: np.ndarray  # [N] int64
    dropped: int = 0  # instances removed by the small-object filter
    mixed: int = 0  # instances whose pixels carry more than one label (class = the largest, as at inference)

    @staticmethod
    def concat(parts: list[InstanceRows], feat_dim: int) -> InstanceRows:
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return InstanceRows(np.zeros((0, feat_dim), np.float32), empty, empty, empty, empty)
        return InstanceRows(
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.classes for p in parts]),
            np.concatenate([p.instance_ids for p in parts]),
            np.concatenate([p.batch_index for p in parts]),
            np.concatenate([p.pixel_counts for p in parts]),
            sum(p.dropped for p in parts),
            sum(p.mixed for p in parts),
        )


def instance_classes(
    label: torch.Tensor, inst: torch.Tensor, batch_index: torch.Tensor, instance_id: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class of every (batch item, instance id) row, read from the label map (vectorised).

    Returns (class = largest label over the instance's pixels [N], whether the instance has several labels [N]).
    The largest label is what ``Pix2PixHDModule.instance_features`` uses, so clustering and inference agree.
    """
    b = inst.shape[0]
    ids = inst.long().reshape(b, -1)
    lab = label.long().reshape(b, -1)
    lo = ids.min()
    span = ids.max() - lo + 1
    keys = (torch.arange(b, device=ids.device).unsqueeze(1) * span + (ids - lo)).reshape(-1)
    uniq, inverse = torch.unique(keys, return_inverse=True)
    flat = lab.reshape(-1)
    cls_max = torch.full((uniq.numel(),), torch.iinfo(torch.long).min, dtype=torch.long, device=ids.device)
    cls_max = cls_max.scatter_reduce(0, inverse, flat, reduce="amax", include_self=True)
    cls_min = torch.full((uniq.numel(),), torch.iinfo(torch.long).max, dtype=torch.long, device=ids.device)
    cls_min = cls_min.scatter_reduce(0, inverse, flat, reduce="amin", include_self=True)
    row_keys = batch_index.long() * span + (instance_id.long() - lo)
    pos = torch.searchsorted(uniq, row_keys)
    return cls_max[pos], cls_max[pos] != cls_min[pos]


def instance_feature_rows(
    features: torch.Tensor,
    label: torch.Tensor,
    inst: torch.Tensor,
    area_blocks: int = 32,
    min_area_ratio: float = 0.5,
) -> InstanceRows:
    """Per-instance mean of any feature map [B, C, H, W] (E's output, or e.g. the RGB image), with the class
    from ``label`` [B, 1, H, W] and the official small-object filter applied. Fully vectorised."""
    if area_blocks <= 0:
        raise ValueError(f"task.area_blocks={area_blocks} must be > 0")
    label, inst = label.to(features.device), inst.to(features.device)
    batch_index, instance_id, means, counts = instance_mean_features(features, inst)
    classes, mixed = instance_classes(label, inst, batch_index, instance_id)
    h, w = features.shape[-2:]
    keep = counts.to(torch.float64) > float(min_area_ratio) * (h * w / float(area_blocks))
    n_kept = int(keep.sum())
    return InstanceRows(
        features=means[keep].detach().float().cpu().numpy(),
        classes=classes[keep].cpu().numpy().astype(np.int64),
        instance_ids=instance_id[keep].cpu().numpy().astype(np.int64),
        batch_index=batch_index[keep].cpu().numpy().astype(np.int64),
        pixel_counts=counts[keep].cpu().numpy().astype(np.int64),
        dropped=int(keep.numel()) - n_kept,
        mixed=int(mixed.sum()),
    )


def kmeans_per_class(
    features: np.ndarray, classes: np.ndarray, label_nc: int, n_clusters: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """K-means of the rows of each class: (centers [label_nc, n_clusters, C] float32, counts [label_nc] int64).

    Class ``c`` gets ``k = min(n_clusters, distinct rows of c)`` centres in ``centers[c, :k]`` (the rest, and
    every class without rows, stay zero with ``counts[c] = k`` / 0). ``KMeans(n_init=10, random_state=seed)``.
    """
    from sklearn.cluster import KMeans

    features = np.asarray(features)
    classes = np.asarray(classes).astype(np.int64).reshape(-1)
    if features.ndim != 2 or features.shape[0] != classes.shape[0]:
        raise ValueError(
            f"features must be [N, C] with one class per row; got features {features.shape}, classes {classes.shape}"
        )
    if n_clusters < 1:
        raise ValueError(f"n_clusters={n_clusters} must be >= 1")
    if classes.size and (classes.min() < 0 or classes.max() >= label_nc):
        raise ValueError(f"classes must lie in [0, label_nc={label_nc}); got [{classes.min()}, {classes.max()}]")
    centers = np.zeros((label_nc, n_clusters, features.shape[1]), dtype=np.float32)
    counts = np.zeros(label_nc, dtype=np.int64)
    for c in np.unique(classes):
        rows = features[classes == c].astype(np.float64)
        k = min(n_clusters, len(np.unique(rows, axis=0)))
        if k == len(rows):  # nothing to cluster: every (distinct) row is a centre
            centers[c, :k] = rows
        else:
            km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(rows)
            centers[c, :k] = km.cluster_centers_
        counts[c] = k
    return centers, counts


def _train_dataset(cfg: DictConfig) -> Any:
    """The train split in order, with the evaluation transform (no flips, centred crops)."""
    datamodule = build_datamodule(cfg)
    datamodule.train_transform = datamodule.eval_transform  # official precompute: --no_flip, serial batches
    datamodule.setup("fit")
    dataset = datamodule.train_set
    max_samples = cfg.task.get("max_samples")
    if max_samples is not None:
        if int(max_samples) < 1:
            raise ValueError(f"task.max_samples={max_samples} must be >= 1 or null (= the whole train split)")
        dataset = Subset(dataset, range(min(int(max_samples), len(dataset))))
    return dataset


def default_output(ckpt_path: str) -> str:
    stem, _ = os.path.splitext(ckpt_path)
    return stem + "_clustered.ckpt"


def centers_path(output: str) -> str:
    return os.path.splitext(output)[0] + ".centers.pt"


def cluster_features(cfg: DictConfig) -> str:
    """Fill the feature bank of ``task.ckpt_path`` and write the clustered checkpoint; returns its path."""
    ckpt_path = require_checkpoint(cfg)
    area_blocks = int(cfg.task.get("area_blocks", 32))
    min_area_ratio = float(cfg.task.get("min_area_ratio", 0.5))
    device = inference_device(cfg)
    module = load_for_inference(cfg, ckpt_path).to(device)
    encoder = getattr(module, "netE", None)
    if encoder is None or not hasattr(module, "feature_centers"):
        raise ValueError(
            f"{cfg.model.name} checkpoint {ckpt_path} has no feature encoder to cluster "
            f"(model.use_features=false?); task=cluster_features needs pix2pixHD's E (§3.4)"
        )
    label_nc, max_k, feat_dim = module.feature_centers.shape
    n_clusters = int(cfg.task.get("n_clusters") or max_k)
    if not 1 <= n_clusters <= max_k:
        raise ValueError(
            f"task.n_clusters={n_clusters} must be in [1, {max_k}] (the checkpoint's bank holds model.n_clusters="
            f"{max_k} centres per class)"
        )

    dataset = _train_dataset(cfg)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=int(cfg.dataset.get("num_workers", 0)))
    parts: list[InstanceRows] = []
    n_images = 0
    with torch.no_grad():
        for batch in progress(loader, "encoding instances", unit="batch"):
            batch = to_device(batch, device)
            feats = encoder(batch["image"], batch["inst"])
            parts.append(instance_feature_rows(feats, batch["label"], batch["inst"], area_blocks, min_area_ratio))
            n_images += batch["image"].shape[0]
    rows = InstanceRows.concat(parts, feat_dim)
    if rows.mixed:
        log.warning("%d instances cover several labels; each was assigned its largest label (as at inference)",
                    rows.mixed)
    if len(rows.classes) == 0:
        raise ValueError(
            f"no instance passed the small-object filter in {n_images} training images (pixel count > "
            f"{min_area_ratio} * H*W/{area_blocks}); lower task.min_area_ratio"
        )
    centers, counts = kmeans_per_class(rows.features, rows.classes, label_nc, n_clusters, int(cfg.seed))

    # Write the bank (full size of the buffer: n_clusters may be below model.n_clusters).
    bank = torch.zeros(label_nc, max_k, feat_dim, dtype=module.feature_centers.dtype)
    bank[:, :n_clusters] = torch.from_numpy(centers)
    bank_counts = torch.from_numpy(counts).to(module.feature_center_counts.dtype)
    ckpt = read_checkpoint(ckpt_path)
    state = ckpt["state_dict"]
    for key, value in (("feature_centers", bank), ("feature_center_counts", bank_counts)):
        if key not in state or tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(f"{ckpt_path} has no '{key}' buffer of shape {tuple(value.shape)}; is it pix2pixHD?")
        state[key] = value
    rows_per_class = np.bincount(rows.classes, minlength=label_nc)
    update_meta(ckpt, feature_clusters={
        "source": os.path.abspath(ckpt_path),
        "images": n_images,
        "n_clusters": n_clusters,
        "area_blocks": area_blocks,
        "min_area_ratio": min_area_ratio,
        "rows_per_class": rows_per_class.tolist(),
        "counts": counts.tolist(),
    })
    output = str(cfg.task.get("output") or default_output(ckpt_path))
    atomic_torch_save(ckpt, output)
    atomic_torch_save({"centers": bank, "counts": bank_counts}, centers_path(output))

    print(f"\ncondsynth: feature clusters of {ckpt_path} from {n_images} training images "
          f"({len(rows.classes)} instances kept, {rows.dropped} small ones dropped)")
    print(f"{'class':>6} {'rows':>8} {'clusters':>9}")
    for c in range(label_nc):
        print(f"{c:>6} {int(rows_per_class[c]):>8} {int(counts[c]):>9}")
    print(f"  clustered checkpoint: {output}")
    print(f"  centres:              {centers_path(output)}")
    return output
