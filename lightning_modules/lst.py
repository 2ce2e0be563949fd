"""Linear Style Transfer (Li, Liu, Kautz, Yang, "Learning Linear Transformations for Fast Arbitrary Style
Transfer", CVPR 2019) as a LightningModule. No discriminator: automatic optimisation, one Adam.

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

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import SynthesisModule
from networks.lst import LinearStylizer, LinearTransform, VGGDecoder, VGGEncoder, check_parts_fit


def inverse_time_decay(decay: float):
    """Official ``adjust_learning_rate``: factor ``1 / (1 + step * decay)``."""

    def factor(step: int) -> float:
        return 1.0 / (1.0 + step * decay)

    return factor


class LSTModule(SynthesisModule):
    model_name = "lst"
    stride_owner = "encoder"
    size_fix_hint = "set dataset.crop_size to a multiple of {stride}"
    # the loss network is rebuilt from its own (ImageNet) weights at start-up; the encoder is kept in
    # checkpoints (it may be random offline, and the decoder and transformation are only valid with it)
    non_persistent_prefixes = (*SynthesisModule.non_persistent_prefixes, "loss_network.")

    def __init__(
        self,
        encoder: VGGEncoder,
        decoder: VGGDecoder,
        transform: LinearTransform,
        loss_network: nn.Module,
        style_loss: nn.Module,
        content_loss: nn.Module,
        stage: Mapping[str, Any],
        optim: Mapping[str, Any],
        pixel_weight: float = 1.0,
        feature_weight: float = 1.0,
        ema: Mapping[str, Any] | None = None,
    ):
        super().__init__(stage, optim, ema)
        check_parts_fit(encoder, transform, decoder)
        self.encoder = encoder
        self.decoder = decoder
        self.transform = transform
        self.loss_network = loss_network
        self.style_loss = style_loss
        self.content_loss = content_loss
        self.pixel_weight = float(pixel_weight)
        self.feature_weight = float(feature_weight)
        self.loss_network.requires_grad_(False)
        if self.stage_spec.name not in ("decoder", "transform"):
            raise ValueError(f"model lst has stages decoder and transform, not '{self.stage_spec.name}'")
        self.setup_stage()

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
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        terms, _ = self.compute_terms(batch)
        loss = torch.stack(list(terms.values())).sum()
        n = int(batch["content"].shape[0])
        self.log_train_terms({**terms, "loss": loss}, n, progress_key="loss")
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.trainer is not None and self.trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=1)

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

    def configure_optimizers(self):
        params = self.trainable_parameters([self.encoder, self.decoder, self.transform])
        if not params:
            raise ValueError(f"stage '{self.stage_spec.name}' leaves no parameter of model lst trainable")
        lr = float(self.optim_cfg.get("lr", 1e-4))
        betas = (float(self.optim_cfg.get("beta1", 0.9)), float(self.optim_cfg.get("beta2", 0.999)))
        optimizer = torch.optim.Adam(params, lr=lr, betas=betas)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, inverse_time_decay(float(self.optim_cfg.get("lr_decay", 1e-5))))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # --- samples / summary ---------------------------------------------------------------------------
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
