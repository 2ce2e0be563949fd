"""Linear Style Transfer (Li, Liu, Kautz, Yang, "Learning Linear Transformations for Fast Arbitrary Style
Transfer", CVPR 2019) as a LightningModule. No discriminator: automatic optimisation, one Adam.
Docs: docs/papers/lst.md (commands, datasets, official weights, measured figures).

Stages:
  * ``decoder``: the VGG encoder is fixed (ImageNet weights, or an official ``vgg_r*.pth``); the decoder learns to
    invert it. The official repository only ships pretrained decoders (``dec_r31.pth``/``dec_r41.pth``, trained as in
    Universal Style Transfer, Li et al. NeurIPS 2017 §3.1), so this stage follows that recipe:
    ``pixel_weight * MSE(D(E(x)), x) + feature_weight * MSE(E(D(E(x))), E(x))`` (UST: lambda = 1).
  * ``transform``: encoder and decoder frozen (loaded from the decoder stage's checkpoint, kept in eval mode); only
    the linear transformation (``snet``, ``cnet``, ``compress``, ``unzip``) trains, with the official
    ``LossCriterion`` on a separate ImageNet VGG-19 loss network: content MSE at relu4_1 (weight 1) plus style
    (channel means + Gram matrices) at relu1_1..relu4_1 (weight 0.02).

Optimiser (official Train.py): Adam(lr 1e-4) on the trainable parameters, lr / (1 + step * 1e-5) every step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import OptimizerFactory, SynthesisModule
from lightning_modules.inference_io import as_images
from losses._frozen import build
from networks.lst import LinearStylizer, LinearTransform, VGGDecoder, VGGEncoder, check_parts_fit


class LSTModule(SynthesisModule):
    """``networks``: factories (Hydra ``_partial_``) of the ``encoder`` and ``decoder`` (given ``level``), the
    ``transform`` (given the encoder's channels and ``matrix_size``) and the VGG-19 ``loss_network``, built in that
    order. ``losses``: ``content`` and ``style`` (transform stage), ``pixel_weight`` and ``feature_weight``
    (decoder stage)."""

    model_name = "lst"
    stride_owner = "encoder"
    size_fix_hint = "set dataset.crop_size to a multiple of {stride}"

    def __init__(
        self,
        networks: Mapping[str, Callable[..., nn.Module]],
        losses: Mapping[str, Any],
        stage: Mapping[str, Any],
        optimizer: OptimizerFactory,
        scheduler: Mapping[str, Any] | None = None,
        level: str = "r41",
        matrix_size: int = 32,
        ema: Mapping[str, Any] | None = None,
    ):
        super().__init__(stage, optimizer, scheduler, ema)
        self.encoder: VGGEncoder = networks["encoder"](level=level)
        self.decoder: VGGDecoder = networks["decoder"](level=level)
        self.transform: LinearTransform = networks["transform"](in_channels=self.encoder.output_channels,
                                                                matrix_size=int(matrix_size))
        check_parts_fit(self.encoder, self.transform, self.decoder)
        # the loss network is rebuilt from its own (ImageNet) weights at start-up; the encoder is kept in
        # checkpoints (it may be random offline, and the decoder and transformation are only valid with it)
        self.loss_network = build(networks["loss_network"])
        self.style_loss = losses["style"]
        self.content_loss = losses["content"]
        self.pixel_weight = float(losses.get("pixel_weight", 1.0))
        self.feature_weight = float(losses.get("feature_weight", 1.0))
        if self.stage_spec.name not in ("decoder", "transform"):
            raise ValueError(f"model lst has stages decoder and transform, not '{self.stage_spec.name}'")
        self.setup_stage()

    def frozen_pretrained(self) -> list[nn.Module]:
        return [self.loss_network]

    # --- parts ---------------------------------------------------------------------------------------
    def parts(self) -> dict[str, list[nn.Module]]:
        return {"encoder": [self.encoder], "decoder": [self.decoder], "transform": [self.transform]}

    @property
    def total_stride(self) -> int:
        return int(self.encoder.total_stride)

    @property
    def is_decoder_stage(self) -> bool:
        return self.stage_spec.name == "decoder"

    def stylizer(self) -> LinearStylizer:
        """Encoder + transformation + decoder of this module (shared, not copied) for inference."""
        return LinearStylizer(self.encoder, self.transform, self.decoder)

    @torch.no_grad()
    def stylize(self, content: Any, style: Any, alpha: float = 1.0) -> torch.Tensor:
        """Python API (``lightning_modules.load``): ``content`` in the style of ``style`` (one style image, or one
        per content), ``[B, 3, H, W]`` in [0, 1]; ``alpha`` blends the content's features back (paper §4). Inputs:
        tensors in [0, 1], PIL images or NumPy arrays, at the size given (``task=stylize`` resizes first)."""
        stylizer = self.stylizer()
        content, style = as_images(content, self.device), as_images(style, self.device)
        t_style, style_mean = stylizer.style_code(style)
        return stylizer.stylize_with_code(content, t_style, style_mean, alpha)

    # --- losses --------------------------------------------------------------------------------------
    def decoder_terms(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Reconstruction terms (already weighted) and the reconstruction."""
        self.check_size(x)
        with torch.no_grad():
            feat = self.encoder(x)
        rec = self.decoder(feat)
        terms = {"pixel": self.pixel_weight * F.mse_loss(rec, x)}
        if self.feature_weight > 0:
            terms["feature"] = self.feature_weight * F.mse_loss(self.encoder(rec), feat)
        return terms, rec

    def transform_terms(self, content: torch.Tensor, style: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                                     torch.Tensor]:
        """Official LossCriterion terms (already weighted) and the (unclamped) stylised images."""
        self.check_size(content)
        with torch.no_grad():
            c_feat = self.encoder(content)
            s_feat = self.encoder(style)
        feat, _ = self.transform(c_feat, s_feat)
        out = self.decoder(feat)
        out_feats = self.loss_network(out)
        with torch.no_grad():
            style_feats = self.loss_network(style)
            content_feats = self.loss_network(content)
        terms = {
            "content": self.content_loss(out_feats, content_feats),
            "style": self.style_loss(out_feats, style_feats),
        }
        return terms, out

    def compute_terms(self, batch: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if self.is_decoder_stage:
            return self.decoder_terms(batch["content"])
        return self.transform_terms(batch["content"], batch["style"])

    # --- training ------------------------------------------------------------------------------------
    def loss_terms(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return self.compute_terms(batch)[0]

    def _evaluate(self, batch: Mapping[str, Any], prefix: str) -> None:
        terms, out = self.compute_terms(batch)
        n = int(batch["content"].shape[0])
        if self.is_decoder_stage:
            x = batch["content"]
            mse = F.mse_loss(out.clamp(0, 1), x).clamp(min=1e-10)
            self.log(f"{prefix}/recon", F.mse_loss(out, x), prog_bar=True, batch_size=n, sync_dist=True)
            self.log(f"{prefix}/psnr", -10 * torch.log10(mse), batch_size=n, sync_dist=True)
            if "feature" in terms:
                self.log(f"{prefix}/feature", terms["feature"], batch_size=n, sync_dist=True)
        else:
            self.log(f"{prefix}/style", terms["style"], prog_bar=True, batch_size=n, sync_dist=True)
            self.log(f"{prefix}/content", terms["content"], batch_size=n, sync_dist=True)
        self.log(f"{prefix}/loss", torch.stack(list(terms.values())).sum(), batch_size=n, sync_dist=True)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    # --- inference, samples, summary -----------------------------------------------------------------
    @torch.no_grad()
    def generate(self, batch: Mapping[str, Any], alpha: float = 1.0) -> torch.Tensor:
        """Stage transform: ``batch["content"]`` in the style of ``batch["style"]``; stage decoder: the content's
        reconstruction. Images in [0, 1]."""
        if self.is_decoder_stage:
            return self.decoder(self.encoder(batch["content"])).clamp(0, 1)
        return self.stylizer()(batch["content"], batch["style"], alpha)

    @torch.no_grad()
    def sample_images(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        content = batch["content"]
        if self.is_decoder_stage:
            rec = self.decoder(self.encoder(content))
            return {"input": content.clamp(0, 1), "reconstruction": rec.clamp(0, 1)}
        stylized = self.stylizer()(content, batch["style"])
        return {"content": content.clamp(0, 1), "style": batch["style"].clamp(0, 1), "stylized": stylized}

    def summary_networks(self, h: int, w: int) -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]:
        s = self.total_stride
        c = self.encoder.output_channels
        feat = torch.zeros(1, c, h // s, w // s)
        return [
            ("encoder", self.encoder, (torch.zeros(1, 3, h, w),)),
            ("transform", self.transform, (feat, feat.clone())),
            ("decoder", self.decoder, (feat.clone(),)),
            ("loss_network", self.loss_network, (torch.zeros(1, 3, h, w),)),
        ]
