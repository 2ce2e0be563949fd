"""Everybody Dance Now's own task=test figures (``model.test_metrics``):

* the paper's image comparisons (Chan et al., ICCV 2019, §5, the ablation tables: Table 1 on the body / full frame, Table 2 on the
  face), SSIM (higher is better) and LPIPS (lower is better) of the generated frame t+1 against the real one:
  ``ssim`` and ``lpips`` are task=test's common whole-frame figures (``task.metrics``, the same implementations);
  ``face_ssim`` and ``face_lpips`` are the same on the face crop (the dataset's ``face_box`` of frame t+1, the box
  the face GAN refines; :func:`face_crops`). ``face_lpips`` follows task=test's one LPIPS rule
  (``tasks.image_metrics.build_lpips``: skipped with its one-line reason without the local weight file, or when the
  crop is smaller than the backbone takes). ``face: false`` leaves the face figures out.

* ``pose_distance``: the paper's pose metric (§5.1): the same pose estimator (MediaPipe, the ``pose`` extra) runs
  on each generated frame; the mean distance in pixels between its keypoints and the input pose, over the joints
  both have (confidence above ``min_confidence``). ``pose_distance_real`` is the same on the real frames (the
  estimator's own error on this data: the floor). ``pose_detected`` (``_real``): the fraction of frames in which
  the estimator found a person at all (the distances average over those frames only). Skipped, with the reason,
  without the extra.
* ``temporal_stability``: mean |f_t+1 - f_t| of consecutive generated frames minus the same of the real frames
  ([0, 1] units; 0 = as much frame-to-frame change as the real video, > 0 = flicker).
* ``baseline_*``: the same for "copy the nearest training frame": each test pose's nearest training pose (mean
  joint distance) gives its real training frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from datamodules.image_grids import to_unit_range
from networks.edn import crop_boxes
from tasks import image_metrics
from tasks.edn.poses import POSE_EXTRA_HINT, PoseEstimator

FACE_NAMES = ("face_ssim", "face_lpips")
SSIM_KERNEL = 11  # torchmetrics' SSIM window (Wang et al. 2004: an 11x11 Gaussian, sigma 1.5)


def pose_distance(pred: np.ndarray, ref: np.ndarray, min_confidence: float = 0.5) -> tuple[float, int]:
    """(sum of L2 distances, number of joints) over joints confident in both [K, 3] poses."""
    both = (pred[:, 2] > min_confidence) & (ref[:, 2] > min_confidence)
    return float(np.linalg.norm(pred[both, :2] - ref[both, :2], axis=1).sum()), int(both.sum())


def nearest_pose(query: np.ndarray, bank: np.ndarray, min_confidence: float = 0.5) -> int:
    """Index of the pose of ``bank`` [N, K, 3] nearest to ``query`` [K, 3] (mean distance over shared joints)."""
    both = (bank[:, :, 2] > min_confidence) & (query[None, :, 2] > min_confidence)
    dist = np.linalg.norm(bank[:, :, :2] - query[None, :, :2], axis=2)
    mean = (dist * both).sum(1) / np.maximum(both.sum(1), 1)
    mean[both.sum(1) == 0] = np.inf
    return int(np.argmin(mean))


def face_crops(images: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """The face crops [B, 3, s, s] of frame t+1 (``images`` [B, 3, H, W]) at ``batch["face_box"][:, 1]``: the box of
    the frame task=test compares (paper §5, Table 2: face SSIM / LPIPS)."""
    if "face_box" not in batch:
        raise ValueError("EDN's face figures need batch['face_box'] (top, left, size per frame) from the datamodule; "
                         "set model.test_metrics.face=false to leave them out")
    return crop_boxes(images, batch["face_box"][:, 1])


class FaceFigures:
    """SSIM (torchmetrics, data range 1) and LPIPS (task=test's one rule) on the face crops of [0, 1] frames."""

    def __init__(self, cfg: Any, device: torch.device) -> None:
        from torchmetrics.image import StructuralSimilarityIndexMeasure

        self.metrics: dict[str, Any] = {"face_ssim": StructuralSimilarityIndexMeasure(data_range=1.0).to(device)}
        self.skipped: dict[str, str] = {}
        self.weights: dict[str, str] = {}
        lpips, reason, used = image_metrics.build_lpips(cfg.task)
        if lpips is None:
            self.skipped["face_lpips"] = str(reason)
        else:
            self.metrics["face_lpips"] = lpips.to(device)
            self.weights.update({f"face_{k}": v for k, v in used.items()})

    def update(self, batch: dict[str, Any], fake: torch.Tensor, real: torch.Tensor) -> None:
        fake_face, real_face = face_crops(fake, batch), face_crops(real, batch)
        for name, metric in list(self.metrics.items()):
            try:
                side = min(fake_face.shape[-2:])
                if name == "face_ssim" and side < SSIM_KERNEL:
                    raise image_metrics.ImagesTooSmall(f"{side} pixels, smaller than SSIM's {SSIM_KERNEL}-pixel "
                                                       f"Gaussian window (a larger dataset.image_size)")
                metric.update(fake_face, real_face)
            except image_metrics.ImagesTooSmall as err:
                self.skipped[name] = f"the face crop: {err}"
                del self.metrics[name]
                self.weights.pop(name, None)
                self.weights.pop("face_lpips_heads", None)

    def compute(self) -> tuple[dict[str, float], dict[str, str]]:
        return {name: float(m.compute()) for name, m in self.metrics.items()}, dict(self.skipped)


def _uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


class EDNTestMetrics:
    """Accumulates the figures of the module docstring over the test batches."""

    def __init__(self, cfg: Any, module: Any, baseline: bool = True, min_confidence: float = 0.5,
                 face: bool = True) -> None:
        self.cfg, self.module, self.baseline = cfg, module, bool(baseline)
        self.face = FaceFigures(cfg, next(module.parameters()).device) if face else None
        self.weights: dict[str, str] = dict(self.face.weights) if self.face is not None else {}
        self.min_confidence = float(min_confidence)
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        self._bank: tuple[np.ndarray, torch.Tensor] | None = None
        try:
            self.estimator = PoseEstimator(video=False, face=False)
        except ModuleNotFoundError:
            self.estimator = None
            for name in ("pose_distance", "pose_distance_real", "baseline_pose_distance"):
                self.skipped[name] = POSE_EXTRA_HINT

    def _add(self, name: str, total: float, count: int) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + total
        self.counts[name] = self.counts.get(name, 0) + count

    def bank(self) -> tuple[np.ndarray, torch.Tensor]:
        """Poses [N, 25, 3] and real frames [N, 3, H, W] of the training pairs' first frames."""
        if self._bank is None:
            from tasks.builders import build_datamodule

            dm = build_datamodule(self.cfg)
            dm.setup("fit")
            items = [dm.train_set[i] for i in range(len(dm.train_set))]
            self._bank = (np.stack([it["pose"][0].numpy() for it in items]),
                          torch.stack([it["image"][0] for it in items]))
        return self._bank

    def _figures(self, prefix: str, pair: torch.Tensor, real: torch.Tensor, poses: torch.Tensor) -> None:
        """pair/real: [B, 2, 3, H, W] in [0, 1]; poses [B, 2, 25, 3]."""
        change = (pair[:, 1] - pair[:, 0]).abs().mean(dim=(1, 2, 3)) - (real[:, 1] - real[:, 0]).abs().mean(dim=(1, 2, 3))
        self._add(f"{prefix}temporal_stability", float(change.sum()), change.numel())
        if self.estimator is None:
            return
        for i in range(pair.shape[0]):
            self._estimate(prefix, "", pair[i, 1], poses[i, 1])

    def _estimate(self, prefix: str, suffix: str, frame: torch.Tensor, pose: torch.Tensor) -> None:
        """MediaPipe on one [3, H, W] frame in [0, 1]: whether it finds a person, and its distance to ``pose``."""
        found = self.estimator(_uint8(frame))
        self._add(f"{prefix}pose_detected{suffix}", float(found is not None), 1)
        if found is not None:
            self._add(f"{prefix}pose_distance{suffix}", *pose_distance(found.body, pose.cpu().numpy(),
                                                                       self.min_confidence))

    @torch.no_grad()
    def update(self, batch: dict[str, Any], fake: torch.Tensor, real: torch.Tensor) -> None:
        pair = to_unit_range(self.module.generate_pair(batch))
        real_pair = to_unit_range(batch["image"])
        self._figures("", pair, real_pair, batch["pose"])
        if self.face is not None:
            self.face.update(batch, fake, real)
        if self.estimator is not None:
            for i in range(real_pair.shape[0]):
                self._estimate("", "_real", real_pair[i, 1], batch["pose"][i, 1])
        if self.baseline:
            poses, frames = self.bank()
            picks = [[nearest_pose(batch["pose"][i, t].cpu().numpy(), poses, self.min_confidence) for t in (0, 1)]
                     for i in range(pair.shape[0])]
            copied = to_unit_range(torch.stack([torch.stack([frames[j] for j in p]) for p in picks]))
            self._figures("baseline_", copied.to(real_pair.device), real_pair, batch["pose"])

    def compute(self) -> tuple[dict[str, float], dict[str, str]]:
        values = {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}
        for k in ("pose_distance", "baseline_pose_distance", "pose_distance_real"):
            if self.estimator is not None and k not in values and (k != "baseline_pose_distance" or self.baseline):
                self.skipped[k] = "the pose estimator found no person in any frame"
        if "pose_distance" in self.counts:
            values["pose_distance_joints"] = float(self.counts["pose_distance"])
        if self.estimator is not None:
            self.estimator.close()
        if self.face is not None:
            face_values, face_skipped = self.face.compute()
            values.update(face_values)
            self.skipped.update(face_skipped)
            self.weights = dict(self.face.weights)
        return values, dict(self.skipped)
