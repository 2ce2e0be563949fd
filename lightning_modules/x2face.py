"""X2Face (Wiles, Koepke, Zisserman, "X2Face: A network for controlling face generation using images, audio, and
pose codes", ECCV 2018) as a LightningModule on the base's single-objective loop.
Docs: docs/papers/x2face.md (commands, datasets, official weights, measured figures).

Stages (``conf/model_stages/x2face/``):
  * ``photometric`` (§3.3 stage I): source and driving frames of one video; L1(generated, driving). Official
    train_model.py: SGD(lr 1e-3, momentum 0.9), batch 16; the paper divides the lr by 10 on a plateau.
  * ``identity`` (§3.3 stage II), from ``photometric``'s checkpoint, lr 1e-4: sources sA, driving dA (same identity)
    and dR (another identity); L1(gdA, dA) + identity-feature L1 on conv2-5 + conv7 for (gdA, dA) + conv6-7 at 1/10
    for (gdR, sA). The identity network (a ``model=face_id`` checkpoint, or a VGG-Face file) is frozen, in eval mode
    and left out of X2Face checkpoints.
  * ``pose_code`` (§4.1), from an ``identity`` (or ``photometric``) checkpoint: both networks frozen; the linear maps
    driving vector -> pose and pose -> driving vector (linear + batch norm) learn from ground-truth poses (radians,
    as the official notebooks). Pose driving: v = v_src + f(p_new) - f(p(v_src)).
  * ``audio_code`` (§4.2): networks frozen; one pass over the training data collects (audio features, driving
    vector) pairs and a linear map is fitted at the epoch's end: least squares (scikit-learn, as the official
    ``LinearRegression``), or ridge on standardised features with the strength chosen on held-out training
    identities (``stage.ridge_alphas``, ``stage.holdout_fraction``; :func:`fit_audio_map`). Audio driving (official
    Audio2Face notebook): v' = v_src + A(a) - A(a_src), then pose leakage removed: v = v' + f(p(v_src)) - f(p(v')).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datamodules.x2face.audio import AudioFeatures
from lightning_modules.base import OptimizerFactory, SynthesisModule
from lightning_modules.checkpoints import read_record
from lightning_modules.inference_io import as_images
from lightning_modules.stages import StageError
from losses.identity import IdentityLoss
from networks.x2face import DrivingNet, EmbeddingNet, PoseCode, X2Face, load_official

log = logging.getLogger(__name__)

STAGES = ("photometric", "identity", "pose_code", "audio_code")


class AudioCode(nn.Module):
    """A linear map audio features -> driving vector (``weight`` [F, C], ``bias`` [C]), fitted by least squares."""

    def __init__(self, audio_dim: int, bottleneck: int):
        super().__init__()
        # parameters that never take a gradient (the fit is closed-form), so the stage's no-op optimizer has them
        self.weight = nn.Parameter(torch.zeros(int(audio_dim), int(bottleneck)), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(int(bottleneck)), requires_grad=False)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight + self.bias


def r2_score(pred: np.ndarray, target: np.ndarray, mean: np.ndarray) -> float:
    """1 - SSE / SST, with SST about ``mean`` (the fit's training mean: a constant predictor scores 0)."""
    return float(1.0 - ((pred - target) ** 2).sum() / max(((target - mean) ** 2).sum(), 1e-12))


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight [F, C], bias [C]) of ``y ~ x @ weight + bias``: scikit-learn's ``LinearRegression`` for ``alpha`` 0
    (the official fit), else ``Ridge(alpha)`` on features standardised with the fit data's mean and deviation,
    folded back into the weight and bias."""
    from sklearn.linear_model import LinearRegression, Ridge

    if alpha == 0:
        reg = LinearRegression().fit(x, y)
        return reg.coef_.T, reg.intercept_
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    reg = Ridge(alpha=alpha).fit((x - mu) / sd, y)
    weight = reg.coef_.T / sd[:, None]
    return weight, reg.intercept_ - mu @ weight


def fit_audio_map(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: Sequence[float],
                  holdout_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float, dict[float, float]]:
    """The audio map's (weight, bias, chosen alpha, held-out R^2 per alpha). With several ``alphas`` and
    ``holdout_fraction`` > 0, that fraction of the ``groups`` (identities; at least one, and one left to fit) is
    held out, each alpha fitted on the rest and scored by R^2 on the held-out identities; the best is refitted on
    everything. One alpha and no hold-out: that alpha, no score."""
    alphas = [float(a) for a in alphas]
    ids = np.unique(groups)
    scores: dict[float, float] = {}
    if holdout_fraction > 0 and len(ids) >= 2:
        rng = np.random.default_rng(seed)
        n_out = min(max(1, round(holdout_fraction * len(ids))), len(ids) - 1)
        held = np.isin(groups, rng.permutation(ids)[:n_out])
        for a in alphas:
            w, b = ridge_fit(x[~held], y[~held], a)
            scores[a] = r2_score(x[held] @ w + b, y[held], y[~held].mean(0))
    best = max(scores, key=scores.get) if scores else alphas[0]
    w, b = ridge_fit(x, y, best)
    return w, b, best, scores


def load_identity_network(path: str, factory: Callable[..., nn.Module]) -> nn.Module:
    """The identity network from a ``model=face_id`` checkpoint (built with the sizes stored in it) or from a
    state-dict file (VGG-Face or a VGG-11 in torchvision's layout; sizes from ``model.networks.identity``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model.identity_weights={path} does not exist: train the identity network first "
            f"(python run.py model=face_id) and pass its checkpoints/last.ckpt, or a VGG-Face state dict")
    if path.endswith(".ckpt"):
        from lightning_modules.loading import build_from_record

        record = read_record(path)
        if record.model != "face_id":
            raise StageError(f"model.identity_weights={path} is a '{record.model}' checkpoint; pass a "
                             f"model=face_id checkpoint (python run.py model=face_id)")
        return build_from_record(record).classifier
    return factory(weights_path=path)


class X2FaceModule(SynthesisModule):
    """``networks``: factories of the ``embedding``, ``driving`` and ``identity`` networks. ``losses``:
    ``photometric`` (L1 weight), ``identity_same`` / ``identity_other`` (IdentityLoss settings without the network:
    layers, weight). ``official_weights``: an official ``x2face_model.pth`` loaded into both networks at start."""

    model_name = "x2face"
    paired_outputs = True
    stride_owner = "U-Net"
    size_fix_hint = "set dataset.image_size to a multiple of {stride} (or model.depth to fewer downsamplings)"

    def __init__(
        self,
        networks: Mapping[str, Callable[..., nn.Module]],
        losses: Mapping[str, Any],
        stage: Mapping[str, Any],
        optimizer: OptimizerFactory,
        scheduler: Mapping[str, Any] | None = None,
        depth: int = 8,
        ngf: int = 64,
        bottleneck: int = 128,
        align_corners: bool = True,
        audio_dim: int = 680,
        official_weights: str | None = None,
        identity_weights: str | None = None,
        ema: Mapping[str, Any] | None = None,
    ):
        super().__init__(stage, optimizer, scheduler, ema)
        if self.stage_spec.extra.get("lr") is not None:  # the stage's own lr (stage identity: 1e-4)
            self.optimizer_factory = functools.partial(self.optimizer_factory, lr=float(self.stage_spec.extra["lr"]))
        if self.stage_spec.name not in STAGES:
            raise ValueError(f"model x2face has stages {STAGES}, not '{self.stage_spec.name}'")
        embedding: EmbeddingNet = networks["embedding"](depth=depth, ngf=ngf, align_corners=align_corners)
        driving: DrivingNet = networks["driving"](depth=depth, ngf=ngf, bottleneck=bottleneck,
                                                  align_corners=align_corners)
        self.net = X2Face(embedding, driving, align_corners=align_corners)
        self.pose_code = PoseCode(bottleneck)
        self.audio_code = AudioCode(audio_dim, bottleneck)
        if official_weights:
            load_official(self.net, str(official_weights))
            log.info("loaded the official X2Face weights from %s", official_weights)
        self.photometric_weight = float(losses.get("photometric", 1.0))
        self.identity_same: IdentityLoss | None = None
        self.identity_other: IdentityLoss | None = None
        # for inference (task=reenact/test build the stage without its start checkpoint) the identity loss is not needed
        training_identity = self.stage_spec.name == "identity" and (self.stage_spec.requires_init or identity_weights)
        if training_identity:
            if not identity_weights:
                raise ValueError(
                    "stage identity needs the identity network: train it (python run.py model=face_id) and pass "
                    "model.identity_weights=<that run>/checkpoints/last.ckpt (or a VGG-Face state dict)")
            net = load_identity_network(str(identity_weights), networks["identity"])
            self.identity_same = IdentityLoss(net, **dict(losses["identity_same"]))
            self.identity_other = IdentityLoss(net, **dict(losses["identity_other"]))
        self._audio_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.stage_spec.name == "audio_code":
            self.automatic_optimization = False
        self.setup_stage(expected_missing={"audio_code.fitted": "older checkpoint"})

    # --- contract ------------------------------------------------------------------------------------
    def parts(self) -> dict[str, list[nn.Module]]:
        return {"embedding": [self.net.embedding], "driving": [self.net.driving], "pose_code": [self.pose_code],
                "audio_code": [self.audio_code]}

    def frozen_pretrained(self) -> list[nn.Module]:
        return [m for m in (self.identity_same, self.identity_other) if m is not None]

    @property
    def total_stride(self) -> int:
        return self.net.total_stride

    # --- losses --------------------------------------------------------------------------------------
    def photometric_terms(self, batch: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        source, driving = batch["source"], batch["driving"]
        self.check_size(driving)
        generated = self.net(driving, source)
        terms = {"photometric": self.photometric_weight * F.l1_loss(generated, driving)}
        if self.identity_same is not None and self.identity_other is not None:
            terms["identity_same"] = self.identity_same(generated, driving)
            generated_other = self.net(batch["other"], source)  # gdR: the source driven by another identity
            terms["identity_other"] = self.identity_other(generated_other, source[:, 0])
        return terms, generated

    def pose_terms(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            v = self.net.driving.driving_vector(batch["driving"])
        pose = torch.deg2rad(batch["driving_pose"].float())
        return {"pose_from_vector": F.mse_loss(self.pose_code.pose_from_vector(v), pose),
                "vector_from_pose": F.mse_loss(self.pose_code.vector_from_pose(pose), v)}

    def loss_terms(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if self.stage_spec.name == "pose_code":
            self._require(batch, "driving_pose", "the pose_code stage needs ground-truth poses")
            return self.pose_terms(batch)
        return self.photometric_terms(batch)[0]

    @staticmethod
    def _require(batch: Mapping[str, Any], key: str, why: str) -> None:
        if key not in batch:
            raise ValueError(f"{why}: the dataset gives no '{key}' (synthetic_faces has it; a face_video folder "
                             f"needs pose.csv / audio.wav per video)")

    # --- the audio stage: one pass collects pairs, then least squares ---------------------------------
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self.stage_spec.name != "audio_code":
            return super().training_step(batch, batch_idx)
        self._require(batch, "driving_audio", "the audio_code stage needs audio")
        with torch.no_grad():
            v = self.net.driving.driving_vector(batch["driving"])
        ident = batch.get("identity", torch.zeros(len(v), dtype=torch.long))
        self._audio_pairs.append((batch["driving_audio"].detach().cpu(), v.cpu(), torch.as_tensor(ident).cpu()))
        self.optimizers().step()  # a no-op (lr 0, no gradients): Lightning counts the step, so it checkpoints
        return None

    def configure_optimizers(self) -> Any:
        if self.stage_spec.name == "audio_code":  # least squares at the epoch's end; see training_step
            return torch.optim.SGD(self.audio_code.parameters(), lr=0.0)
        return super().configure_optimizers()

    def on_train_epoch_end(self) -> None:
        if self.stage_spec.name == "audio_code" and self._audio_pairs:
            self.fit_audio_code(*(torch.cat([p[i] for p in self._audio_pairs]) for i in range(3)))
            self._audio_pairs = []

    def fit_audio_code(self, features: torch.Tensor, vectors: torch.Tensor,
                       identities: torch.Tensor | None = None) -> dict[float, float]:
        """The linear map from audio features to driving vectors (:func:`fit_audio_map`; ``stage.ridge_alphas``
        [0.0] and ``stage.holdout_fraction`` 0 = the official least squares); gathered over DDP ranks first.
        Returns the held-out R^2 per alpha (also logged)."""
        if identities is None:
            identities = torch.zeros(len(features), dtype=torch.long)
        if self.trainer is not None and self.trainer.world_size > 1:
            features, vectors, identities = (self.all_gather(t.to(self.device)).flatten(0, 1).cpu()
                                             for t in (features, vectors, identities))
        extra = self.stage_spec.extra
        alphas = list(extra.get("ridge_alphas") or [0.0])
        holdout = float(extra.get("holdout_fraction") or 0.0)
        w, b, alpha, scores = fit_audio_map(features.double().numpy(), vectors.double().numpy(),
                                            identities.numpy(), alphas, holdout)
        with torch.no_grad():
            self.audio_code.weight.copy_(torch.from_numpy(w).float())
            self.audio_code.bias.copy_(torch.from_numpy(np.asarray(b)).float())
            self.audio_code.fitted.fill_(True)
        log.info("audio_code: alpha %g on %d (audio, driving vector) pairs; held-out R^2 per alpha: %s", alpha,
                 len(features), {a: round(r, 3) for a, r in scores.items()})
        if scores and self.trainer is not None:
            self.log("train/audio_alpha", alpha, batch_size=1)
            self.log("train/audio_holdout_r2", scores[alpha], batch_size=1)
        return scores

    # --- driving vectors ------------------------------------------------------------------------------
    def vector_for_pose(self, source: torch.Tensor, pose_deg: torch.Tensor) -> torch.Tensor:
        """v = v_src + f(p_new) - f(p(v_src)) with the source frame's own driving vector."""
        v_src = self.net.driving.driving_vector(source)
        return self.pose_code.retarget(v_src, torch.deg2rad(pose_deg.float()))

    def vector_for_audio(self, source: torch.Tensor, audio: torch.Tensor, source_audio: torch.Tensor) -> torch.Tensor:
        if not bool(self.audio_code.fitted):
            raise ValueError("this checkpoint has no fitted audio map: run stage audio_code first "
                             "(python run.py model=x2face stage=audio_code stage.init_from=...)")
        v_src = self.net.driving.driving_vector(source)
        moved = v_src + self.audio_code(audio) - self.audio_code(source_audio)
        pc = self.pose_code
        return moved + pc.vector_from_pose(pc.pose_from_vector(v_src)) - pc.vector_from_pose(pc.pose_from_vector(moved))

    # --- validation / test ----------------------------------------------------------------------------
    def _evaluate(self, batch: Mapping[str, Any], prefix: str) -> None:
        n = int(batch["driving"].shape[0])
        name = self.stage_spec.name
        if name == "pose_code":
            terms = self.pose_terms(batch)
            self.log(f"{prefix}/pose_mae_deg", self.pose_error_deg(batch).mean(), prog_bar=True,
                     batch_size=n, sync_dist=True)
            self.log(f"{prefix}/loss", sum(terms.values()), batch_size=n, sync_dist=True)
            return
        if name == "audio_code":
            if "driving_audio" in batch and bool(self.audio_code.fitted):
                v = self.net.driving.driving_vector(batch["driving"])
                err = F.mse_loss(self.audio_code(batch["driving_audio"]), v)
                self.log(f"{prefix}/loss", err, batch_size=n, sync_dist=True)
            return
        source = batch["source"]
        l1 = {}
        for k in sorted({1, source.shape[1]}):
            l1[k] = F.l1_loss(self.net(batch["driving"], source[:, :k]).clamp(0, 1), batch["driving"])
            self.log(f"{prefix}/l1_{k}src", l1[k], batch_size=n, sync_dist=True, prog_bar=k == 1)
        self.log(f"{prefix}/loss", l1[1], batch_size=n, sync_dist=True)  # training uses one source frame

    def pose_error_deg(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """|pose code's pose of the driving frame - its ground-truth pose| [B, 3] (pitch, yaw, roll; degrees)."""
        pred = torch.rad2deg(self.pose_code.pose_from_vector(self.net.driving.driving_vector(batch["driving"])))
        return (pred - batch["driving_pose"]).abs()

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    # --- inference, samples, summary -----------------------------------------------------------------
    @torch.no_grad()
    def generate(self, batch: Mapping[str, Any], num_sources: int | None = None) -> torch.Tensor:
        """The source frames (``batch["source"]``, [B, K, 3, H, W], the first ``num_sources``) driven by
        ``batch["driving"]``; in [0, 1]."""
        source = batch["source"] if num_sources is None else batch["source"][:, :num_sources]
        return self.net(batch["driving"], source).clamp(0, 1)

    def target_images(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return batch["driving"]

    @torch.no_grad()
    def reenact(self, source: Any, driving: Any = None, pose: Any = None, audio: Any = None,
                fps: float = 25.0) -> torch.Tensor:
        """Python API (``lightning_modules.load``): drive the source face(s) (up to 3 images, paper §3.4) by one of
        ``driving`` (frames: tensors in [0, 1], PIL images or arrays), ``pose`` (``[T, 3]`` yaw/pitch/roll in
        degrees: stage pose_code) or ``audio`` (``(samples, sample_rate)``: stage audio_code, ``fps`` frames per
        second) -> ``[T, 3, H, W]`` in [0, 1], as ``task=reenact`` generates them."""
        if sum(x is not None for x in (driving, pose, audio)) != 1:
            raise ValueError("pass exactly one of driving=, pose= or audio=")
        sources = as_images(source, self.device)[None]  # [1, K, 3, S, S]
        self.check_size(sources[0, :1])
        embedded, _ = self.net.embed(sources)
        if driving is not None:
            flows = [self.net.driving(d[None])[0] for d in as_images(driving, self.device)]
        else:
            if pose is not None:
                poses = torch.as_tensor(pose, dtype=torch.float32, device=self.device).reshape(-1, 3)
                vectors = self.vector_for_pose(sources[:, 0].expand(len(poses), -1, -1, -1), poses)
            else:
                samples, rate = audio
                window = (getattr(self, "run_config", None) or {}).get("dataset", {}).get("audio_window_s")
                if window is None:
                    raise ValueError("this model's config has no dataset.audio_window_s (the audio stage's window)")
                feats = AudioFeatures(window_s=float(window))
                n = int(len(samples) / rate * fps)
                if n < 1:
                    raise ValueError(f"the audio ({len(samples) / rate:.3f} s) gives no frame at {fps:g} fps")
                feat = torch.stack([feats.at_frame(samples, rate, t, fps) for t in range(n)]).to(self.device)
                silent = feats.of_window(torch.zeros(feats.window_samples)).to(self.device).expand(n, -1)
                vectors = self.vector_for_audio(sources[:, 0].expand(n, -1, -1, -1), feat, silent)
            flows = [self.net.driving.flow_from_vector(vectors[t: t + 1]) for t in range(len(vectors))]
        return torch.cat([self.net.drive(embedded, flow).clamp(0, 1) for flow in flows])

    @torch.no_grad()
    def sample_images(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        source = batch["source"]
        embedded, _ = self.net.embed(source)
        rows = {"source": source[:, 0], "embedded": embedded.clamp(0, 1), "driving": batch["driving"],
                "generated": self.net(batch["driving"], source).clamp(0, 1)}
        if self.stage_spec.name == "identity":
            rows["other"] = batch["other"]
            rows["driven_by_other"] = self.net(batch["other"], source).clamp(0, 1)
        if self.stage_spec.name == "pose_code" and "driving_pose" in batch:
            v = self.vector_for_pose(source[:, 0], batch["driving_pose"])
            rows["pose_driven"] = self.net.from_vector(v, source).clamp(0, 1)
        return rows

    def summary_networks(self, h: int, w: int) -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]:
        x = torch.zeros(1, 3, h, w)
        rows = [("embedding", self.net.embedding, (x,)), ("driving", self.net.driving, (x.clone(),)),
                ("pose_code.pose_from_vector", self.pose_code.pose_from_vector,
                 (torch.zeros(1, self.net.driving.widths[-1]),))]
        if self.identity_same is not None:
            rows.append(("identity", self.identity_same.network, (x.clone(),)))
        return rows

