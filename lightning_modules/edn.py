"""Everybody Dance Now (Chan et al., "Everybody Dance Now", ICCV 2019) as a LightningModule.
Docs: docs/papers/edn.md (commands, datasets, official weights, measured figures).

Pose -> video with a temporally coherent pix2pixHD (§3.2) and a face GAN (§3.3):

* **Temporal generator** ``G(x_t, previous)``: the pose label of frame t concatenated with the previous generated
  frame (zeros for a sequence's first frame). Training runs on consecutive pairs: ``f_t = G(x_t, 0)`` then
  ``f_t1 = G(x_t1, f_t)``, with gradients through both; inference runs frame by frame on its own outputs.
* **Discriminators**, each with the shared conditional-GAN objective (LSGAN + D feature matching, + VGG for the
  frames): the per-frame multiscale D on (x, y) for both frames, and the temporal multiscale D on
  (x_t, x_t1, y_t, y_t1) for real and (x_t, x_t1, f_t, f_t1) for fake.
* **Face GAN** (stage ``face``, body generator frozen): a crop around the face (128 px at 1024x512, scaled with
  the resolution, clamped at the borders; from the dataset's ``face_box``; in training frame t's box serves both
  frames of a pair, as in the official training); the face generator adds a residual to the generated crop given
  the pose crop; the face D sees (pose crop, face crop); its losses are the shared objective with VGG on the face.
  The refined crop is pasted back into the frame, and that refined frame conditions the next one, in training and
  at inference (official ``pix2pixHD_model_fullts.forward``/``inference`` and ``test_fullts.py``:
  ``previous_cond = generated``).

Stages (official carolineec/EverybodyDanceNow): ``global`` (G1, half resolution: 512x256 in the paper),
``local`` (the local enhancer at full resolution, G1 loaded; for the first ``stage.fix_global_epochs`` epochs G1 sits
in G's optimizer at learning rate 0, then trains jointly: official ``--niter_fix_global`` / ``update_fixed_params``),
``face`` (face G and D; body loaded and frozen).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from datamodules.edn.datamodule import to_signed_tensor
from datamodules.image_grids import to_unit_range
from lightning_modules.base import GANModule, OptimizerFactory
from lightning_modules.inference_io import as_images
from losses.conditional_gan import ConditionalGANObjective
from networks.edn import FaceResidualGenerator, TemporalGenerator, crop_boxes, load_official_edn, paste_boxes

ObjectiveFactory = Callable[[], ConditionalGANObjective]
log = logging.getLogger(__name__)


class EDNModule(GANModule):
    """``networks``: factories of the ``global`` / ``local`` frame generators (the stage's ``generator`` picks one),
    ``discriminator`` (frame), ``temporal_discriminator``, ``face_generator`` and ``face_discriminator``; the module
    gives them their channel counts. ``losses``: ``frame``, ``temporal`` and ``face`` objective factories (only the
    stage's are built: the body stages use frame + temporal, stage face uses face). ``official_weights``: a folder
    of the official code's ``<official_epoch>_net_{G,D,Gface,Dface}.pth``, loaded at start
    (:func:`networks.edn.load_official_edn`)."""

    model_name = "edn"
    generate_range = (-1.0, 1.0)  # pix2pixHD's G, ending in Tanh
    sweep_metric = "val/l1"
    paired_outputs = True
    stride_owner = "generator"
    size_fix_hint = "set dataset.size_multiple={stride} (the datamodule then fits the size) or pick another image_size"

    def __init__(self, networks: Mapping[str, Callable[..., nn.Module]], losses: Mapping[str, ObjectiveFactory],
                 stage: Mapping[str, Any], optimizer: OptimizerFactory, label_nc: int = 3,
                 scheduler: Mapping[str, Any] | None = None, ema: Mapping[str, Any] | None = None,
                 update_order: str = "official", official_weights: str | None = None,
                 official_epoch: str = "latest") -> None:
        super().__init__(stage, optimizer, scheduler, ema, update_order)
        self.label_nc = int(label_nc)
        which = str(self.stage_spec.extra.get("generator", "global"))
        if networks.get(which) is None:
            raise ValueError(f"stage '{self.stage_spec.name}' uses generator '{which}', which model.networks does "
                             f"not have (it has {sorted(networks)})")
        self.face_stage = bool(self.stage_spec.extra.get("face", False))
        self.netG = TemporalGenerator(networks[which], self.label_nc, 3)
        c = self.label_nc + 3
        self.netD = self.netDT = self.faceG = self.faceD = None
        if self.face_stage:
            self.faceG = FaceResidualGenerator(networks["face_generator"], self.label_nc)
            self.faceD = networks["face_discriminator"](input_nc=c)
            self.objectives = nn.ModuleDict({"face": losses["face"]()})
        else:
            self.netD = networks["discriminator"](input_nc=c)
            self.netDT = networks["temporal_discriminator"](input_nc=2 * c)
            self.objectives = nn.ModuleDict({"frame": losses["frame"](), "temporal": losses["temporal"]()})
        if official_weights:
            # official <epoch>_net_{G,D,Gface,Dface}.pth (networks.edn.load_official_edn); our per-frame netD has no
            # official counterpart (the official netD is the temporal one) and keeps its initial weights
            for line in load_official_edn(official_weights, self.netG, self.netDT, self.faceG, self.faceD,
                                          str(official_epoch)):
                log.info("official EDN weights from %s: %s", official_weights, line)
        fix = self.stage_spec.extra.get("fix_global_epochs")
        self.fix_global_epochs = None if fix is None else int(fix)
        if self.fix_global_epochs is not None and "generator.global" in self.stage_spec.frozen:
            raise ValueError(f"stage '{self.stage_spec.name}': stage.fix_global_epochs={fix} trains G1 after that many "
                             "epochs, but stage.frozen lists generator.global (frozen for the whole stage); set "
                             "stage.frozen=[] or stage.fix_global_epochs=null")
        self.setup_stage(
            expected_missing={"netG.generator.local_": "the local enhancer G2 is new in stage local (pix2pixHD §3.2)",
                              "faceG.": "the face generator is new in stage face (EDN §3.3)",
                              "faceD.": "the face discriminator is new in stage face (EDN §3.3)"},
            expected_unused={"netG.generator.head.": "G1's output layers are dropped when G1 feeds G2",
                             "netD.": "stage face trains only the face GAN: the frame D is not needed",
                             "netDT.": "stage face trains only the face GAN: the temporal D is not needed",
                             "generator_ema.": "the EMA copy is rebuilt from the loaded generator"},
        )

    # --- parts ---------------------------------------------------------------------------------------
    def frozen_pretrained(self) -> list[nn.Module]:
        return [m for obj in self.objectives.values() for m in obj.frozen_networks()]

    def parts(self) -> dict[str, list[nn.Module]]:
        parts: dict[str, list[nn.Module]] = {"generator": [self.netG]}
        parts.update({f"generator.{k}": v for k, v in self.netG.part_modules().items()})
        for name, net in (("discriminator", self.netD), ("temporal_discriminator", self.netDT),
                          ("face_generator", self.faceG), ("face_discriminator", self.faceD)):
            if net is not None:
                parts[name] = [net]
        return parts

    def generator_modules(self) -> list[nn.Module]:
        return [self.faceG] if self.face_stage else [self.netG]

    # --- official --niter_fix_global: G1 at learning rate 0, then joint -------------------------------
    def _fixed_global_params(self) -> list[nn.Parameter]:
        if self.fix_global_epochs is None or self.face_stage or "generator.global" not in self.parts():
            return []
        return [p for m in self.resolve_part("generator.global") for p in m.parameters() if p.requires_grad]

    def optimizer_parameters(self) -> dict[str, Any]:
        """G's optimizer gets G1 as a second parameter group at learning rate 0 while ``stage.fix_global_epochs``
        lasts (official ``--niter_fix_global``: every G1 parameter in the group with ``lr 0.0``). G1 keeps its
        gradients (so DDP syncs them) but does not move."""
        groups = super().optimizer_parameters()
        fixed = {id(p) for p in self._fixed_global_params()}
        if fixed and self.fix_global_epochs > 0:
            gen = groups["generator"]
            groups["generator"] = [{"params": [p for p in gen if id(p) not in fixed]},
                                   {"params": [p for p in gen if id(p) in fixed], "lr": 0.0}]
        return groups

    def release_global(self, optimizer: torch.optim.Optimizer, schedulers: list[Any]) -> bool:
        """Give G1's group (the second of G's optimizer) the first group's learning rate, in the optimizer and in
        its schedulers' base rates (official ``update_fixed_params``: G1 and G2 trained jointly from here).
        Returns whether anything changed."""
        if len(optimizer.param_groups) < 2 or optimizer.param_groups[1]["lr"] != 0.0:
            return False
        main, fixed = optimizer.param_groups[0], optimizer.param_groups[1]
        base = float(main.get("initial_lr", optimizer.defaults["lr"]))
        fixed["lr"] = main["lr"]
        fixed["initial_lr"] = base
        for sch in schedulers:
            if getattr(sch, "optimizer", None) is optimizer and hasattr(sch, "base_lrs"):
                sch.base_lrs[1] = base
        return True

    def on_train_epoch_start(self) -> None:
        if self.fix_global_epochs is None or self.current_epoch < self.fix_global_epochs:
            return
        schedulers = self.lr_schedulers()
        schedulers = schedulers if isinstance(schedulers, list) else [] if schedulers is None else [schedulers]
        optimizer = self._optimizers()[0]
        # Lightning's wrapper -> the torch optimizer that the schedulers hold (else their base rates stay 0)
        optimizer = getattr(optimizer, "optimizer", optimizer)
        if self.release_global(optimizer, schedulers):
            self.print(f"condsynth: epoch {self.current_epoch}: G1 joins the training (stage.fix_global_epochs="
                       f"{self.fix_global_epochs}, official --niter_fix_global)")

    def discriminator_modules(self) -> list[nn.Module]:
        return [self.faceD] if self.face_stage else [self.netD, self.netDT]

    def training_only_modules(self) -> list[nn.Module]:
        return [d for d in (self.netD, self.netDT, self.faceD) if d is not None]

    def ema_source(self) -> nn.Module:
        return self.faceG if self.face_stage else self.netG

    @property
    def total_stride(self) -> int:
        return self.netG.total_stride

    # --- the body ------------------------------------------------------------------------------------
    def _pairs(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        label = batch["label"]
        if label.dim() != 5 or label.shape[1] != 2 or label.shape[2] != self.label_nc:
            raise ValueError(f"batch['label'] must be [B, 2, {self.label_nc}, H, W] (consecutive frame pairs), got "
                             f"{tuple(label.shape)}")
        self.check_size(label[:, 0])
        return label, batch.get("image")

    def prepare_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        label, real = self._pairs(batch)
        if self.face_stage:
            return self._prepare_face(batch, label, real)
        fake = self.netG.sequence(label)  # f_t = G(x_t, 0); f_t1 = G(x_t1, f_t): gradients through both
        return {"label": label, "real": real, "fake": fake}

    @staticmethod
    def _frames(x: torch.Tensor) -> torch.Tensor:
        """[B, 2, C, H, W] -> [2B, C, H, W] (both frames as one batch, for the per-frame D)."""
        return x.transpose(0, 1).reshape(-1, *x.shape[2:])

    @staticmethod
    def _stacked(x: torch.Tensor) -> torch.Tensor:
        """[B, 2, C, H, W] -> [B, 2C, H, W] (t and t+1 along channels, for the temporal D)."""
        return x.reshape(x.shape[0], -1, *x.shape[3:])

    def _discriminator_inputs(self, step: dict[str, Any]) -> list[tuple[Any, nn.Module, torch.Tensor, torch.Tensor,
                                                                          torch.Tensor]]:
        """Each discriminator with its objective and what it sees (label, real, fake): in stage face the face D on
        the crops; otherwise the frame D on single frames and the temporal D on consecutive pairs."""
        if self.face_stage:
            return [(self.objectives["face"], self.faceD, step["label_crop"], step["real_crop"], step["fake_crop"])]
        views = (step["label"], step["real"], step["fake"])
        return [(self.objectives["frame"], self.netD, *map(self._frames, views)),
                (self.objectives["temporal"], self.netDT, *map(self._stacked, views))]

    def discriminator_loss(self, step: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for objective, net, *inputs in self._discriminator_inputs(step):
            terms.update(objective.discriminator_terms(net, *inputs))
        return terms

    def generator_loss(self, step: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for objective, net, *inputs in self._discriminator_inputs(step):
            terms.update(objective.generator_terms(net, *inputs))
        return terms

    def gan_terms(self, step: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Official EDN ``train_fullts.py`` (pix2pixHD's order): every term from the current discriminators, one
        pass of each on the real frames."""
        d_terms: dict[str, torch.Tensor] = {}
        g_terms: dict[str, torch.Tensor] = {}
        for objective, net, *inputs in self._discriminator_inputs(step):
            d, g = objective.terms(net, *inputs)
            d_terms.update(d)
            g_terms.update(g)
        return d_terms, g_terms

    # --- the face ------------------------------------------------------------------------------------
    def _prepare_face(self, batch: Mapping[str, Any], label: torch.Tensor, real: torch.Tensor) -> dict[str, Any]:
        if "face_box" not in batch:
            raise ValueError("stage face needs batch['face_box'] (top, left, size per frame) from the datamodule")
        box = self.pair_face_box(batch["face_box"])
        self.check_face_boxes(box)
        previous, bodies, label_crops, body_crops, fake_crops, real_crops = None, [], [], [], [], []
        for t in range(label.shape[1]):
            # frame t+1 is conditioned on the refined frame t (official forward: cat(next_label, I_0)); the frozen
            # body G passes the face G's gradient back from frame t+1 to frame t's residual
            with torch.no_grad() if previous is None else nullcontext():
                body = self.netG(label[:, t], previous)
            label_crops.append(crop_boxes(label[:, t], box))
            body_crops.append(crop_boxes(body, box))
            real_crops.append(crop_boxes(real[:, t], box))
            fake_crops.append(self.faceG(label_crops[-1], body_crops[-1]))
            previous = paste_boxes(body, fake_crops[-1], box)
            bodies.append(body)
        return {"label_crop": torch.cat(label_crops), "body_crop": torch.cat(body_crops),
                "fake_crop": torch.cat(fake_crops), "real_crop": torch.cat(real_crops),
                "body": torch.stack(bodies, dim=1), "face_box": box}

    @staticmethod
    def pair_face_box(boxes: torch.Tensor) -> torch.Tensor:
        """The one face box [B, 3] used for both frames of a training pair: frame t's. The official training reads
        one ``face_coords`` per item (``aligned_dataset.py``: the facetext of ``index``, i.e. frame t) and crops
        label, generated and real frames of t and t+1 with it (``pix2pixHD_model_fullts.forward``); inference
        (``generate_pair``, ``task=transfer``) uses each frame's own box, as ``test_fullts.py`` does."""
        if boxes.dim() != 3 or boxes.shape[1:] != (2, 3):
            raise ValueError(f"batch['face_box'] must be [B, 2, 3] (top, left, size of each frame of a pair), got "
                             f"{tuple(boxes.shape)}")
        return boxes[:, 0]

    def check_face_boxes(self, boxes: torch.Tensor) -> None:
        """The face crop must pass the face generator: its size a multiple of that generator's stride."""
        size, stride = int(boxes[0, 2]), self.faceG.total_stride
        if size % stride:
            raise ValueError(f"the face crop is {size}x{size} px (128 * H / 512), not a multiple of the face generator's "
                             f"total stride {stride}: pick dataset.image_size with a crop divisible by {stride}, or a "
                             f"smaller model.networks.face_generator.n_downsampling")

    def refine_face(self, label: torch.Tensor, frame: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
        """``frame`` with the face residual added inside ``boxes`` [B, 3] (unchanged outside stage face)."""
        if self.faceG is None or boxes is None:
            return frame
        self.check_face_boxes(boxes)
        face = self.inference_face()(crop_boxes(label, boxes), crop_boxes(frame, boxes))
        return paste_boxes(frame, face, boxes)

    # --- inference -----------------------------------------------------------------------------------
    def inference_generator(self) -> nn.Module:
        if self.generator_ema is not None and not self.face_stage:
            return self.generator_ema.module
        return self.netG

    def inference_face(self) -> nn.Module:
        if self.generator_ema is not None and self.face_stage:
            return self.generator_ema.module
        return self.faceG

    @torch.no_grad()
    def next_frame(self, label: torch.Tensor, previous: torch.Tensor | None,
                   face_box: torch.Tensor | None = None) -> torch.Tensor:
        """One step of inference: the output frame for ``label`` [B, C, H, W] given the previous output (None =
        first frame). In stage face the output adds the face residual, and it is this refined frame that conditions
        the next step (official ``test_fullts.py``: ``previous_cond = generated``)."""
        self.check_size(label)
        body = self.inference_generator()(label, previous)
        return self.refine_face(label, body, face_box)

    @torch.no_grad()
    def transfer(self, poses: Any, face_boxes: Any = None) -> torch.Tensor:
        """Python API (``lightning_modules.load``): a sequence of rendered pose images (``datamodules.edn.render``:
        uint8 ``H x W x 3`` arrays or PIL images as ``task=transfer`` renders them, or ``[T, 3, H, W]`` tensors in
        [0, 1]) -> the target person's frames ``[T, 3, H, W]`` in [0, 1], each conditioned on the previous output
        (official ``test_fullts.py``). ``face_boxes``: one ``[cx, cy, side]`` per frame for the face residual
        (stage face; ``datamodules.edn.datamodule.face_box``)."""
        items = list(poses) if isinstance(poses, (list, tuple)) or (isinstance(poses, torch.Tensor)
                                                                     and poses.dim() == 4) else [poses]
        boxes = None if face_boxes is None else torch.as_tensor(face_boxes, dtype=torch.long, device=self.device)
        previous, frames = None, []
        for t, pose in enumerate(items):
            if isinstance(pose, torch.Tensor):
                label = as_images(pose, self.device) * 2 - 1
            else:  # uint8 pixels, scaled exactly as the data and task=transfer scale them
                pixels = np.asarray(pose.convert("RGB") if hasattr(pose, "convert") else pose)
                label = to_signed_tensor(pixels)[None].to(self.device)
            previous = self.next_frame(label, previous, None if boxes is None else boxes[t: t + 1])
            frames.append(to_unit_range(previous))
        return torch.cat(frames)

    @torch.no_grad()
    def generate_pair(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Both frames of each pair, generated in order: [B, 2, 3, H, W] in [-1, 1] (the face residual can leave
        that range: clamped here, while the unclamped frame conditions the next, as official ``test_fullts.py``)."""
        label, _ = self._pairs(batch)
        boxes = batch.get("face_box")
        previous, out = None, []
        for t in range(label.shape[1]):
            previous = self.next_frame(label[:, t], previous, None if boxes is None else boxes[:, t])
            out.append(previous)
        return torch.stack(out, dim=1).clamp(-1.0, 1.0)

    @torch.no_grad()
    def generate(self, batch: Mapping[str, Any], **options: Any) -> torch.Tensor:
        """The second frame of each pair, generated after the first (frame t+1 conditioned on G's frame t)."""
        return self.generate_pair(batch)[:, 1]

    def to_unit_images(self, images: torch.Tensor) -> torch.Tensor:
        return to_unit_range(images)

    def target_images(self, batch: Mapping[str, Any]) -> torch.Tensor:
        if batch.get("image") is None:
            raise ValueError("the test split has no frames to compare with; task=test needs the target's frames")
        return batch["image"][:, 1]

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        fake = self.generate_pair(batch)
        real = batch["image"]
        n = real.shape[0]
        self.log("val/l1", (fake - real).abs().mean(), prog_bar=True, batch_size=n, sync_dist=True)
        mse = ((to_unit_range(fake) - to_unit_range(real)) ** 2).mean().clamp(min=1e-10)
        self.log("val/psnr", -10 * torch.log10(mse), batch_size=n, sync_dist=True)

    def sample_images(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        fake = self.generate_pair(batch)
        rows = {"pose_t": to_unit_range(batch["label"][:, 0]), "generated_t": to_unit_range(fake[:, 0]),
                "pose_t1": to_unit_range(batch["label"][:, 1]), "generated_t1": to_unit_range(fake[:, 1])}
        if batch.get("image") is not None:
            rows["real_t1"] = to_unit_range(batch["image"][:, 1])
        return rows

    # --- summary -------------------------------------------------------------------------------------
    def face_size(self, h: int) -> int:
        return max(1, round(128 * h / 512))

    def summary_networks(self, h: int, w: int) -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]:
        c = self.label_nc
        nets: list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]] = [
            ("netG", self.netG, (torch.zeros(1, c, h, w), torch.zeros(1, 3, h, w)))]
        if self.netD is not None:
            nets.append(("netD", self.netD, (torch.zeros(1, c + 3, h, w),)))
            nets.append(("netDT", self.netDT, (torch.zeros(1, 2 * (c + 3), h, w),)))
        if self.faceG is not None:
            s = self.face_size(h)
            nets.append(("faceG", self.faceG, (torch.zeros(1, c, s, s), torch.zeros(1, 3, s, s))))
            nets.append(("faceD", self.faceD, (torch.zeros(1, c + 3, s, s),)))
        for name, obj in self.objectives.items():
            s = self.face_size(h) if name == "face" else None  # the face VGG sees the face crops
            for vgg in obj.frozen_networks():
                nets.append((f"objectives.{name}.perceptual.vgg", vgg,
                             (torch.zeros(1, 3, s or h, s or w),)))
        return nets
