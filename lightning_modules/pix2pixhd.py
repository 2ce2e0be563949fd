"""pix2pixHD (Wang et al., "High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs",
CVPR 2018) as a LightningModule.
Docs: docs/papers/pix2pixhd.md (commands, datasets, official weights, measured figures).

Input encoding (§3.3, §3.4): one-hot label map, instance boundary map, and optionally the instance-wise
features of the encoder E concatenated to the generator's input; the input channel counts of G, D and E follow
from ``label_nc``, ``use_instance``, ``use_features`` and ``feat_num``. Objective (Eq. 4 + §3.2): the shared
:class:`losses.ConditionalGANObjective` (LSGAN over the multi-scale discriminators, D feature matching and VGG
perceptual loss, each switchable by setting it to null in the config for the paper's ablations).

Stages: ``global`` (G1 alone, half resolution), ``local`` (G2 with G1 loaded from the global checkpoint and
frozen), ``joint`` (all fine-tuned). At inference each instance's feature comes from the encoder on a real
image, or from the per-class K-means centres stored in this module's buffers (``task=cluster_features``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from datamodules.image_grids import colorize_labels, to_unit_range
from lightning_modules.base import GANModule, OptimizerFactory
from lightning_modules.inference_io import as_ids, as_images
from losses.conditional_gan import ConditionalGANObjective
from networks.label_encoding import instance_boundary_map, one_hot_labels

FEATURE_MODES = ("encode", "random", "cluster", "zeros")
log = logging.getLogger(__name__)


class Pix2PixHDModule(GANModule):
    """``networks``: factories (Hydra ``_partial_``) of ``global`` / ``local`` generators (the stage's
    ``generator`` picks one), ``discriminator`` and ``encoder``; they get their channel counts here.
    ``losses``: the conditional-GAN objective, or its factory (built after the networks)."""

    model_name = "pix2pixhd"
    sweep_metric = "val/l1"
    paired_outputs = True
    generate_range = (-1.0, 1.0)  # G ends in Tanh
    stride_owner = "generator"
    size_fix_hint = ("set dataset.size_multiple={stride} (the datamodule then resizes) or pick an image_size "
                     "divisible by {stride}")

    def __init__(
        self,
        networks: Mapping[str, Callable[..., nn.Module]],
        losses: ConditionalGANObjective | Callable[[], ConditionalGANObjective],
        label_nc: int,
        stage: Mapping[str, Any],
        optimizer: OptimizerFactory,
        scheduler: Mapping[str, Any] | None = None,
        use_instance: bool = True,
        use_features: bool = True,
        feat_num: int = 3,
        n_clusters: int = 10,
        ema: Mapping[str, Any] | None = None,
        update_order: str = "official",
    ):
        super().__init__(stage, optimizer, scheduler, ema, update_order)
        self.label_nc = int(label_nc)
        self.use_instance = bool(use_instance)
        self.use_features = bool(use_features)
        self.feat_num = int(feat_num)
        which = str(self.stage_spec.extra.get("generator", "global"))
        if networks.get(which) is None:
            raise ValueError(f"stage '{self.stage_spec.name}' uses generator '{which}', which "
                             f"model.networks does not have (it has {sorted(networks)})")
        if self.use_features and networks.get("encoder") is None:
            raise ValueError("model.use_features=true needs model.networks.encoder (pix2pixHD §3.4)")
        self.netG = networks[which](input_nc=self.generator_input_nc, output_nc=3)
        self.netD = networks["discriminator"](input_nc=self.label_input_nc + 3)  # D sees the label map and an image
        self.netE = networks["encoder"](input_nc=3, output_nc=self.feat_num) if self.use_features else None
        # built after G, D and E (as a factory) so that the VGG's initialisation never shifts theirs
        self.objective = losses if isinstance(losses, nn.Module) else losses()
        # Per-class K-means centres of instance features (filled by task=cluster_features). Classes with no
        # centres have count 0 and get zero features: defined values, never uninitialised memory.
        self.register_buffer("feature_centers", torch.zeros(self.label_nc, int(n_clusters), self.feat_num))
        self.register_buffer("feature_center_counts", torch.zeros(self.label_nc, dtype=torch.long))
        self.setup_stage(
            expected_missing={"netG.local_": "the local enhancer G2 is new in this stage (pix2pixHD §3.2)"},
            expected_unused={
                "netG.head.": "G1's output layers are dropped when G1 feeds G2 (pix2pixHD §3.2)",
                "generator_ema.": "the EMA copy is rebuilt from the loaded generator",
            },
        )

    @property
    def label_input_nc(self) -> int:
        """One-hot classes (+1 instance boundary map): D's condition and G's input before features."""
        return self.label_nc + int(self.use_instance)

    @property
    def generator_input_nc(self) -> int:
        return self.label_input_nc + (self.feat_num if self.use_features else 0)

    # --- parts ---------------------------------------------------------------------------------------
    def frozen_pretrained(self) -> list[nn.Module]:
        return self.objective.frozen_networks()

    def parts(self) -> dict[str, list[nn.Module]]:
        parts: dict[str, list[nn.Module]] = {"generator": [self.netG], "discriminator": [self.netD]}
        if hasattr(self.netG, "part_modules"):
            parts.update({f"generator.{k}": v for k, v in self.netG.part_modules().items()})
        else:
            parts["generator.global"] = [self.netG]
        parts["encoder"] = [self.netE] if self.netE is not None else []
        return parts

    def generator_modules(self) -> list[nn.Module]:
        return [self.netG] + ([self.netE] if self.netE is not None else [])

    def discriminator_modules(self) -> list[nn.Module]:
        return [self.netD]

    def ema_source(self) -> nn.Module:
        return self.netG

    @property
    def total_stride(self) -> int:
        return int(getattr(self.netG, "total_stride", 1))

    # --- input encoding ------------------------------------------------------------------------------
    def encode_label(self, label: torch.Tensor, inst: torch.Tensor | None) -> torch.Tensor:
        """One-hot label map (+ instance boundary map): the input of D, and of G before features."""
        x = one_hot_labels(label, self.label_nc)
        if self.use_instance:
            if inst is None:
                raise ValueError("model.use_instance=true but the batch has no 'inst' map")
            x = torch.cat([x, instance_boundary_map(inst)], dim=1)
        return x

    def instance_features(
        self,
        label: torch.Tensor,
        inst: torch.Tensor,
        image: torch.Tensor | None = None,
        mode: str = "encode",
        cluster_index: Mapping[int, int] | int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Feature map for G's input (§3.4).

        ``encode``: E on the given real image, averaged per instance. ``random``: every instance draws a centre
        of its class (seeded by ``generator``). ``cluster``: centre index ``cluster_index`` (an int, or a dict
        class -> index) for every instance of the class. ``zeros``: all-zero features.
        """
        if mode not in FEATURE_MODES:
            raise ValueError(f"feature mode '{mode}' unknown; use one of {FEATURE_MODES}")
        if mode == "encode":
            if image is None:
                raise ValueError("feature mode 'encode' needs a real image; use 'random' or 'cluster' without one")
            return self.netE(image, inst)
        b, _, h, w = label.shape
        if mode == "zeros":
            return label.new_zeros((b, self.feat_num, h, w), dtype=torch.float32)
        inverse, cls = self._instance_groups(label, inst)
        counts = self.feature_center_counts[cls]
        if mode == "random":
            u = torch.rand(cls.shape[0], generator=generator, device="cpu").to(cls.device)
            idx = (u * counts.clamp(min=1)).long()
        else:
            idx = self._cluster_indices(cls, cluster_index)
            too_big = (idx >= counts) & (counts > 0)
            if bool(too_big.any()):
                bad = int(cls[too_big][0])
                raise ValueError(
                    f"cluster index {int(idx[too_big][0])} for class {bad} is out of range: that class has "
                    f"{int(self.feature_center_counts[bad])} centres"
                )
        feats = self.feature_centers[cls, idx.clamp(min=0, max=self.feature_centers.shape[1] - 1)]
        feats = torch.where((counts > 0).unsqueeze(1), feats, torch.zeros_like(feats))
        return self._paint_instances(feats, inverse, inst.shape)

    def _cluster_indices(self, cls: torch.Tensor, cluster_index: Mapping[int, int] | int | None) -> torch.Tensor:
        if cluster_index is None:
            return torch.zeros_like(cls)
        if isinstance(cluster_index, int):
            return torch.full_like(cls, cluster_index)
        table = torch.zeros(self.label_nc, dtype=torch.long, device=cls.device)
        for c, i in dict(cluster_index).items():
            table[int(c)] = int(i)
        return table[cls]

    @staticmethod
    def _instance_groups(label: torch.Tensor, inst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Group pixels by (batch item, instance id): per-pixel group index and each group's class.

        An instance lies inside one class, so the largest label over its pixels is its class (works for any
        instance-id convention, Cityscapes' class*1000+k included).
        """
        b = inst.shape[0]
        ids = inst.long()
        keys = torch.arange(b, device=ids.device).view(b, 1, 1, 1) * (ids.max() - ids.min() + 1) + (ids - ids.min())
        _, inverse = torch.unique(keys.flatten(), return_inverse=True)
        n = int(inverse.max()) + 1
        cls = torch.full((n,), -1, dtype=torch.long, device=ids.device)
        cls = cls.scatter_reduce(0, inverse, label.long().flatten(), reduce="amax", include_self=True)
        return inverse, cls

    @staticmethod
    def _paint_instances(values: torch.Tensor, inverse: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Write row g of ``values`` [N, C] at every pixel of group g; returns [B, C, H, W]."""
        b, _, h, w = shape
        return values[inverse].view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()

    def generator_input(self, label_map: torch.Tensor, feats: torch.Tensor | None) -> torch.Tensor:
        return label_map if feats is None else torch.cat([label_map, feats], dim=1)

    # --- training ------------------------------------------------------------------------------------
    def prepare_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        label, inst, real = batch["label"], batch.get("inst"), batch["image"]
        self.check_size(label)
        label_map = self.encode_label(label, inst)
        feats = self.netE(real, inst) if self.netE is not None else None
        fake = self.netG(self.generator_input(label_map, feats))
        return {"label_map": label_map, "real": real, "fake": fake}

    def discriminator_loss(self, step: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.objective.discriminator_terms(self.netD, step["label_map"], step["real"], step["fake"])

    def generator_loss(self, step: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.objective.generator_terms(self.netD, step["label_map"], step["real"], step["fake"])

    def gan_terms(self, step: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Official ``Pix2PixHDModel.forward``: every term from the current D, one D pass on the real image."""
        return self.objective.terms(self.netD, step["label_map"], step["real"], step["fake"])

    # --- summary -------------------------------------------------------------------------------------
    def summary_networks(self, h: int, w: int) -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]:
        nets: list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]] = [
            ("netG", self.netG, (torch.zeros(1, self.generator_input_nc, h, w),)),
            ("netD", self.netD, (torch.zeros(1, self.label_input_nc + 3, h, w),)),
        ]
        if self.netE is not None:
            nets.append(("netE", self.netE, (torch.zeros(1, 3, h, w), torch.zeros(1, 1, h, w, dtype=torch.long))))
        for vgg in self.objective.frozen_networks():
            nets.append(("objective.perceptual.vgg", vgg, (torch.zeros(1, 3, h, w),)))
        return nets

    # --- inference -----------------------------------------------------------------------------------
    def inference_generator(self) -> nn.Module:
        return self.generator_ema.module if self.generator_ema is not None else self.netG

    @torch.no_grad()
    def generate(
        self,
        batch: Mapping[str, Any],
        feature_mode: str = "encode",
        cluster_index: Mapping[int, int] | int | None = None,
        generator: torch.Generator | None = None,
        feature_seed: int | None = None,
    ) -> torch.Tensor:
        """G's output in [-1, 1] for the label (+ instance) maps of ``batch``, with instance features from
        ``feature_mode`` (see :meth:`instance_features`); ``feature_seed`` seeds ``random`` features when no
        ``generator`` is given (one seeded stream per module and seed, across calls)."""
        if generator is None and feature_seed is not None:
            streams = self.__dict__.setdefault("_feature_streams", {})
            generator = streams.setdefault(int(feature_seed), torch.Generator().manual_seed(int(feature_seed)))
        label, inst = batch["label"], batch.get("inst")
        self.check_size(label)
        label_map = self.encode_label(label, inst)
        feats = None
        if self.use_features:
            self._warn_if_no_centres(feature_mode)
            feats = self.instance_features(label, inst, batch.get("image"), feature_mode, cluster_index, generator)
        return self.inference_generator()(self.generator_input(label_map, feats))

    @torch.no_grad()
    def synthesize(self, label: Any, inst: Any = None, image: Any = None, feature_mode: str | None = None,
                   cluster_index: Mapping[int, int] | int | None = None, feature_seed: int = 0) -> torch.Tensor:
        """Python API (``lightning_modules.load``): label ids (+ instance ids, default: one instance per class region;
        + a photo for ``feature_mode=encode``,
        the default when one is given, else ``random``: per-class K-means centres seeded by ``feature_seed``, as
        ``task=predict``) -> the generated photos, ``[B, 3, H, W]`` in [0, 1]. Inputs: tensors, PIL images or
        NumPy arrays (:mod:`lightning_modules.inference_io`)."""
        batch: dict[str, Any] = {"label": as_ids(label, self.device)}
        top = int(batch["label"].max())
        if int(batch["label"].min()) < 0 or top >= self.label_nc:
            raise ValueError(f"label ids must be in [0, {self.label_nc - 1}] (this model's classes), got up to {top}: "
                             f"map the ids to the training data's classes")
        # no instance map: every class region is one instance (what an instance-less dataset gives)
        batch["inst"] = as_ids(inst, self.device) if inst is not None else batch["label"]
        if image is not None:
            batch["image"] = as_images(image, self.device) * 2 - 1
        mode = feature_mode or ("encode" if image is not None else "random")
        generator = torch.Generator().manual_seed(int(feature_seed))
        return to_unit_range(self.generate(batch, mode, cluster_index, generator))

    def _warn_if_no_centres(self, feature_mode: str) -> None:
        """random/cluster features come from the K-means centres; an unclustered model gives zero features."""
        if feature_mode in ("random", "cluster") and int(self.feature_center_counts.sum()) == 0 \
                and not getattr(self, "_warned_no_centres", False):
            self._warned_no_centres = True
            log.warning("feature_mode=%s but the checkpoint has no feature centres (every class gets zero "
                        "features); run task=cluster_features on it first (pix2pixHD §3.4)", feature_mode)

    def to_unit_images(self, images: torch.Tensor) -> torch.Tensor:
        return to_unit_range(images)  # G ends in Tanh: [-1, 1]

    def target_images(self, batch: Mapping[str, Any]) -> torch.Tensor:
        if "image" not in batch:
            raise ValueError("the test split has no photos to compare with; task=test needs paired data")
        return batch["image"]

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        fake = self.generate(batch, "encode")
        real = batch["image"]
        l1 = (fake - real).abs().mean()
        mse = ((to_unit_range(fake) - to_unit_range(real)) ** 2).mean().clamp(min=1e-10)
        psnr = -10 * torch.log10(mse)
        n = real.shape[0]
        self.log("val/l1", l1, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/psnr", psnr, batch_size=n, sync_dist=True)

    def sample_images(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        fake = self.generate(batch, "encode")
        rows = {"label": colorize_labels(batch["label"], self.label_nc), "generated": to_unit_range(fake)}
        if "image" in batch:
            rows["real"] = to_unit_range(batch["image"])
        return rows
