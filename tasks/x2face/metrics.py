"""X2Face's own task=test figures (``model.test_metrics``), one report beside PSNR / SSIM / LPIPS / FID:

* ``l1_<k>src``: the photometric error (Wiles et al., ECCV 2018, §5, Table 1: mean L1 between the generated and
  the driving frame, [0, 1] pixels) with ``k`` source frames of the same video, for each ``k`` of ``num_sources``
  (the paper: 1 and 3). The sources are the test sample's first ``k``; a ``k`` past the samples' sources is skipped
  with the reason.
* ``identity_distance``: the identity network's cosine distance ``1 - cos(e(generated), e(driving))`` (§3.3: the
  identity loss compares the two in the features of a fixed face network, VGG-Face; here the embedding layer
  ``identity_layer``, fc7 = ``conv7`` by default, flattened), ``identity_distance_source`` the same against the
  first source frame (the identity the output should keep) and ``identity_distance_real`` between driving and
  source frame (same identity: the network's own floor on this data). The network is ``identity_weights`` (a
  ``model=face_id`` checkpoint or a VGG-Face state dict, read by ``lightning_modules.x2face.load_identity_network``;
  null = ``model.identity_weights``); without one the three are skipped with the fix.
* ``pose_error_deg`` (``_pitch`` / ``_yaw`` / ``_roll``): the pose code's error (§4.1, evaluated in Table 2: mean absolute error in
  degrees between the pose read from the driving vector and the driving frame's ground-truth pose), for a checkpoint
  of stage ``pose_code`` or later on data with poses; skipped with the reason otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

POSE_STAGES = ("pose_code", "audio_code")
IDENTITY_NAMES = ("identity_distance", "identity_distance_source", "identity_distance_real")
POSE_NAMES = ("pose_error_deg", "pose_error_deg_pitch", "pose_error_deg_yaw", "pose_error_deg_roll")
IDENTITY_HINT = ("no identity network: set model.test_metrics.identity_weights=<face_id run>/checkpoints/last.ckpt "
                 "(python run.py model=face_id) or a VGG-Face state dict")


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-item ``1 - cos`` of two [B, ...] embeddings (flattened)."""
    return 1.0 - F.cosine_similarity(a.flatten(1).double(), b.flatten(1).double(), dim=1)


class X2FaceTestMetrics:
    """Accumulates the figures of the module docstring over the test batches."""

    def __init__(self, cfg: Any, module: Any, num_sources: Sequence[int] = (1, 3), identity_weights: str | None = None,
                 identity_layer: str = "conv7", identity_network: nn.Module | None = None) -> None:
        self.module = module
        self.num_sources = sorted({int(k) for k in num_sources})
        self.identity_layer = str(identity_layer)
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        self.weights: dict[str, str] = {}
        device = next(module.parameters()).device
        self.identity = identity_network
        path = identity_weights or cfg.model.get("identity_weights")
        if self.identity is None and path:
            from lightning_modules.factory import safe_instantiate
            from lightning_modules.x2face import load_identity_network

            factory = safe_instantiate(cfg.model.networks.identity, "model.networks.identity")
            self.identity = load_identity_network(str(path), factory)
            self.weights["identity"] = str(path)
        if self.identity is None:
            self.skipped.update({name: IDENTITY_HINT for name in IDENTITY_NAMES})
        else:
            self.identity = self.identity.to(device).eval().requires_grad_(False)
        stage = str(module.stage_spec.name)
        self.pose = stage in POSE_STAGES
        if not self.pose:
            self.skipped.update({name: f"the checkpoint's stage is {stage}: the pose code is trained in stage "
                                       f"pose_code (python run.py model=x2face stage=pose_code stage.init_from=...)"
                                 for name in POSE_NAMES})

    def _add(self, name: str, values: torch.Tensor) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(values.double().sum())
        self.counts[name] = self.counts.get(name, 0) + int(values.numel())

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        assert self.identity is not None
        features = self.identity(images)
        if self.identity_layer not in features:
            raise ValueError(f"model.test_metrics.identity_layer={self.identity_layer} is not a layer of the identity "
                             f"network; use one of {sorted(features)}")
        return features[self.identity_layer]

    @torch.no_grad()
    def update(self, batch: dict[str, Any], fake: torch.Tensor, real: torch.Tensor) -> None:
        have = int(batch["source"].shape[1])
        for k in self.num_sources:
            if k > have:
                self.skipped[f"l1_{k}src"] = f"the test samples carry {have} source frame(s), fewer than {k}"
                continue
            generated = self.module.generate(batch, num_sources=k)
            self._add(f"l1_{k}src", (generated - batch["driving"]).abs().mean(dim=(1, 2, 3)))
        if self.identity is not None:
            e_fake, e_driving, e_source = (self._embed(x) for x in (fake, batch["driving"], batch["source"][:, 0]))
            self._add("identity_distance", cosine_distance(e_fake, e_driving))
            self._add("identity_distance_source", cosine_distance(e_fake, e_source))
            self._add("identity_distance_real", cosine_distance(e_driving, e_source))
        if self.pose:
            if "driving_pose" not in batch:
                self.skipped.update({name: "the test split has no poses (driving_pose)" for name in POSE_NAMES})
                self.pose = False
            else:
                error = self.module.pose_error_deg(batch)
                self._add("pose_error_deg", error)
                for i, axis in enumerate(("pitch", "yaw", "roll")):
                    self._add(f"pose_error_deg_{axis}", error[:, i])

    def compute(self) -> tuple[dict[str, float], dict[str, str]]:
        values = {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}
        return values, {k: v for k, v in self.skipped.items() if k not in values}
