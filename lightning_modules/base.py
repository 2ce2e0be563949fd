"""Shared LightningModule bases.

``SynthesisModule``: stage handling (freezing, init from the previous stage), the pix2pixHD learning-rate
schedule (constant for ``niter`` epochs, then linear decay to zero over ``niter_decay``), optional EMA of the
generator, sample-image hooks and checkpoint metadata. Papers without a discriminator (LST, X2Face) build on it.

``GANModule``: manual optimisation with one discriminator step then one generator step per batch
(``discriminator_loss`` / ``generator_loss`` hooks return a dict of named, already weighted terms).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from lightning_modules.stages import StageSpec, apply_freezing, load_stage_checkpoint

log = logging.getLogger(__name__)


def constant_then_linear_decay(niter: int, niter_decay: int):
    """pix2pixHD schedule (official ``update_learning_rate``): factor 1 for ``niter`` epochs, then minus
    1/niter_decay per epoch, reaching 0 after ``niter + niter_decay`` epochs."""

    def factor(epoch: int) -> float:
        if epoch < niter or niter_decay <= 0:
            return 1.0
        return max(0.0, 1.0 - (epoch - niter + 1) / niter_decay)

    return factor


class SynthesisModule(pl.LightningModule):
    """Base of every paper's module. Subclasses implement ``parts()``, the losses and ``sample_images``."""

    model_name: str = ""
    #: the validation metric (lower is better) that ``task=train`` returns to Hydra sweepers
    sweep_metric: str = "val/loss"

    def __init__(self, stage: Mapping[str, Any], optim: Mapping[str, Any], ema: Mapping[str, Any] | None = None):
        super().__init__()
        self.stage_spec = StageSpec.from_config(stage)
        self.optim_cfg = dict(optim)
        self.ema_cfg = dict(ema or {})
        self.run_config: dict[str, Any] | None = None  # the resolved Hydra config, stored in checkpoints
        self.generator_ema: AveragedModel | None = None

    # --- logging -------------------------------------------------------------------------------------
    def log_train_terms(self, terms: Mapping[str, torch.Tensor], batch_size: int, progress_key: str) -> None:
        """Log ``train/<term>`` for every loss term, averaged over the DDP ranks (``sync_dist``: one all-reduce of
        a few scalars per step), so a run's curves do not depend on which rank logs or on the number of devices;
        ``progress_key`` also goes to the progress bar."""
        values = {f"train/{k}": v.detach() for k, v in terms.items()}
        self.log_dict(values, batch_size=batch_size, sync_dist=True)
        self.log(progress_key, values[f"train/{progress_key}"], prog_bar=True, logger=False, batch_size=batch_size,
                 sync_dist=True)

    # --- input sizes -----------------------------------------------------------------------------------
    #: what owns the stride (named in the error) and how a user makes the size fit; set by each model
    stride_owner: str = "network"
    size_fix_hint: str = "resize the input to a multiple of {stride}"

    @property
    def total_stride(self) -> int:
        """Input height and width must be multiples of this (the product of the downsampling strides)."""
        return 1

    def check_size(self, x: torch.Tensor) -> None:
        """Stop early, naming the size, the stride and the fix, when ``x`` cannot pass the network."""
        h, w = x.shape[-2:]
        s = self.total_stride
        if h % s or w % s:
            raise ValueError(
                f"input size {h}x{w} is not a multiple of the {self.stride_owner}'s total stride {s}; "
                + self.size_fix_hint.format(stride=s)
            )

    # --- parts and stages -------------------------------------------------------------------------------
    def parts(self) -> dict[str, list[nn.Module]]:
        """Map of part name -> modules; stage configs refer to these names."""
        raise NotImplementedError

    def resolve_part(self, name: str) -> list[nn.Module]:
        parts = self.parts()
        if name not in parts:
            raise ValueError(
                f"stage '{self.stage_spec.name}' names part '{name}', which model '{self.model_name}' does not "
                f"have; valid parts: {sorted(parts)}"
            )
        return parts[name]

    def setup_stage(self, expected_missing: Mapping[str, str] | None = None,
                    expected_unused: Mapping[str, str] | None = None) -> None:
        """Load the previous stage's checkpoint (if any) then freeze what the stage freezes."""
        spec = self.stage_spec
        if spec.model != self.model_name:
            raise ValueError(f"stage '{spec.name}' belongs to model '{spec.model}', not '{self.model_name}'")
        if spec.init_from is not None:
            load_stage_checkpoint(self, spec, expected_missing, expected_unused)
        apply_freezing(self.resolve_part, spec)
        self._stage_ready = True
        self.train(self.training)  # frozen parts to eval now; Lightning keeps the modes it finds at fit start
        if self.ema_cfg.get("enabled") and self.ema_source() is not None:
            self.generator_ema = AveragedModel(
                copy.deepcopy(self.ema_source()),
                multi_avg_fn=get_ema_multi_avg_fn(float(self.ema_cfg.get("decay", 0.999))),
                use_buffers=True,
            )
            self.generator_ema.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        """The parts this stage freezes (``stage.frozen``)."""
        return [m for part in self.stage_spec.frozen for m in self.resolve_part(part)]

    def train(self, mode: bool = True) -> SynthesisModule:
        """Frozen parts stay in eval mode while the rest trains: no dropout noise and no normalisation statistics
        drifting in parts that do not learn (once ``setup_stage`` has run)."""
        super().train(mode)
        if getattr(self, "_stage_ready", False):
            for m in self.frozen_modules():
                m.eval()
        return self

    def on_train_start(self) -> None:
        self.train(True)

    def apply_stage_freezing(self) -> None:
        apply_freezing(self.resolve_part, self.stage_spec)

    def trainable_parameters(self, modules: list[nn.Module]) -> list[nn.Parameter]:
        seen: set[int] = set()
        params = []
        for m in modules:
            for p in m.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    # --- EMA -----------------------------------------------------------------------------------------
    def ema_source(self) -> nn.Module | None:
        """The network whose weights are averaged (the generator); None for no EMA."""
        return None

    def update_ema(self) -> None:
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.ema_source())

    # --- schedule ------------------------------------------------------------------------------------
    def make_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        factor = constant_then_linear_decay(int(self.optim_cfg.get("niter", 100)),
                                            int(self.optim_cfg.get("niter_decay", 100)))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    # --- samples -------------------------------------------------------------------------------------
    def sample_images(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Named image rows in [0,1], [B,3,H,W] each (e.g. label | generated | real)."""
        raise NotImplementedError

    # --- checkpoint metadata -------------------------------------------------------------------------
    # Frozen pretrained loss networks (VGG, identity nets) are rebuilt from their own weights at start-up, so
    # checkpoints leave them out (~80 MB for VGG19) and loading puts the current ones back.
    non_persistent_prefixes: tuple[str, ...] = ("perceptual_loss.", "identity_loss.", "style_loss.")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(self.non_persistent_prefixes)]:
            del state[key]
        checkpoint["condsynth"] = {
            "model": self.model_name,
            "stage": self.stage_spec.name,
            "config": self.run_config,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("condsynth", {})
        if meta.get("model") not in (None, self.model_name):
            raise ValueError(f"checkpoint is for model '{meta.get('model')}', this run is '{self.model_name}'")
        self.restore_non_persistent(checkpoint.get("state_dict", {}))

    def restore_non_persistent(self, state: dict[str, Any]) -> dict[str, Any]:
        """Fill the keys ``on_save_checkpoint`` left out with this module's current values (in place)."""
        for key, value in self.state_dict().items():
            if key.startswith(self.non_persistent_prefixes) and key not in state:
                state[key] = value
        return state


class GANModule(SynthesisModule):
    """Manual optimisation: a discriminator step, then a generator step, per batch."""

    def __init__(self, stage: Mapping[str, Any], optim: Mapping[str, Any], ema: Mapping[str, Any] | None = None):
        super().__init__(stage, optim, ema)
        self.automatic_optimization = False

    def generator_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def discriminator_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def prepare_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Encode inputs once and run the generator; the result is shared by both loss hooks."""
        raise NotImplementedError

    def discriminator_loss(self, step: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def generator_loss(self, step: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def configure_optimizers(self):
        lr = float(self.optim_cfg.get("lr", 2e-4))
        betas = (float(self.optim_cfg.get("beta1", 0.5)), float(self.optim_cfg.get("beta2", 0.999)))
        g_params = self.trainable_parameters(self.generator_modules())
        d_params = self.trainable_parameters(self.discriminator_modules())
        if not g_params:
            raise ValueError(f"stage '{self.stage_spec.name}' leaves no generator parameter trainable")
        opt_g = torch.optim.Adam(g_params, lr=lr, betas=betas)
        opt_d = torch.optim.Adam(d_params, lr=lr, betas=betas) if d_params else None
        optimizers = [opt_g] + ([opt_d] if opt_d is not None else [])
        return optimizers, [self.make_scheduler(o) for o in optimizers]

    def _optimizers(self) -> tuple[Any, Any]:
        opts = self.optimizers()
        if not isinstance(opts, list):
            return opts, None
        return opts[0], (opts[1] if len(opts) > 1 else None)

    @staticmethod
    def _total(terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([v for v in terms.values()]).sum()

    def gan_step(self, batch: Mapping[str, Any], opt_g: Any, opt_d: Any,
                 backward: Callable[[torch.Tensor], None] | None = None,
                 toggle: bool = False) -> dict[str, torch.Tensor]:
        """One discriminator step then one generator step on ``batch``; returns the detached loss terms.

        Inside a Trainer, ``training_step`` passes ``manual_backward`` and toggles each optimizer's parameters;
        outside one (benchmarks, notebooks, tests) plain ``loss.backward()`` is used.
        """
        backward = backward or (lambda loss: loss.backward())
        step = self.prepare_batch(batch)
        logs: dict[str, torch.Tensor] = {}
        if opt_d is not None:
            if toggle:
                self.toggle_optimizer(opt_d)
            d_terms = self.discriminator_loss(step)
            d_total = self._total(d_terms)
            opt_d.zero_grad(set_to_none=True)
            backward(d_total)
            opt_d.step()
            if toggle:
                self.untoggle_optimizer(opt_d)
            logs.update({k: v.detach() for k, v in d_terms.items()})
            logs["loss_D"] = d_total.detach()
        if toggle:
            self.toggle_optimizer(opt_g)
        g_terms = self.generator_loss(step)
        g_total = self._total(g_terms)
        opt_g.zero_grad(set_to_none=True)
        backward(g_total)
        opt_g.step()
        if toggle:
            self.untoggle_optimizer(opt_g)
        self.update_ema()
        logs.update({k: v.detach() for k, v in g_terms.items()})
        logs["loss_G"] = g_total.detach()
        return logs

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        opt_g, opt_d = self._optimizers()
        logs = self.gan_step(batch, opt_g, opt_d, backward=self.manual_backward, toggle=True)
        self.log_train_terms(logs, self._batch_size(batch), progress_key="loss_G")

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for sch in schedulers if isinstance(schedulers, list) else [schedulers]:
            sch.step()
        self.log("train/lr", self._optimizers()[0].param_groups[0]["lr"], sync_dist=True)

    @staticmethod
    def _batch_size(batch: Mapping[str, Any]) -> int:
        for v in batch.values():
            if isinstance(v, torch.Tensor):
                return int(v.shape[0])
        return 1
