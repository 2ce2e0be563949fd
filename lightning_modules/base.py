"""Shared LightningModule bases and the module contract every paper follows.

``SynthesisModule`` owns what every paper shares: stages (freezing, init from the previous stage's checkpoint),
the training loop of a single-objective paper (``loss_terms`` -> sum -> log -> one optimizer step), optimizers
and learning-rate schedules built from config factories, optional EMA of the generator, checkpoint metadata and
frozen pretrained networks left out of checkpoints.

``GANModule``: manual optimisation with one generator step and one discriminator step per batch, in the order
``model.update_order`` names (``official``: every term from one forward with the current D, then G's step, then
D's, as official pix2pixHD ``train.py``; ``d_first``: D's step, then G's terms against the updated D). The
``discriminator_loss`` / ``generator_loss`` / ``gan_terms`` hooks return dicts of named, already weighted terms.

The contract a paper's module implements (what stages, tasks and callbacks call):

* ``parts()``: part name -> modules; stage configs freeze and train parts by these names.
* ``loss_terms(batch)`` (single objective) or ``prepare_batch`` / ``discriminator_loss`` / ``generator_loss``
  (GAN): named, already weighted loss terms.
* ``generate(batch, **options)``: the inference call tasks use (images in the module's output range).
* ``sample_images(batch)``: named rows in [0, 1] for the sample grids.
* ``summary_networks(h, w)``: (name, network, example inputs) for ``task=summary``.
* ``frozen_pretrained()``: pretrained networks that never train (VGG, identity networks): kept in eval mode
  and left out of checkpoints (rebuilt from their own weights at start-up).
* ``paired_outputs``: True when ``generate`` has a pixel-aligned ground truth in the batch (``target_images``),
  so ``task=test`` computes image metrics; otherwise it runs the module's ``test_step``.
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

from lightning_modules.checkpoints import META_KEY, write_meta
from lightning_modules.stages import StageSpec, apply_freezing, load_stage_checkpoint

log = logging.getLogger(__name__)


OptimizerFactory = Callable[..., torch.optim.Optimizer]


class SynthesisModule(pl.LightningModule):
    """Base of every paper's module; see the module docstring for the contract.

    ``optimizer``: a factory ``params -> Optimizer`` (a Hydra ``_partial_`` of e.g. ``torch.optim.Adam``).
    ``scheduler``: ``{factory: optimizer -> LRScheduler, interval: epoch|step, monitor: <metric> (plateau)}`` or
    None for a constant learning rate.
    """

    model_name: str = ""
    #: the validation metric (lower is better) that ``task=train`` returns to Hydra sweepers
    sweep_metric: str = "val/loss"
    #: ``generate`` has a pixel-aligned ground truth (``target_images``): ``task=test`` computes image metrics
    paired_outputs: bool = False

    def __init__(self, stage: Mapping[str, Any], optimizer: OptimizerFactory,
                 scheduler: Mapping[str, Any] | None = None, ema: Mapping[str, Any] | None = None):
        super().__init__()
        self.stage_spec = StageSpec.from_config(stage)
        if not callable(optimizer):
            raise ValueError(f"model.optimizer must be a factory (a _partial_ optimizer config), got {optimizer!r}")
        self.optimizer_factory = optimizer
        self.scheduler_cfg = dict(scheduler or {})
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
        for m in self.frozen_pretrained():
            m.requires_grad_(False)
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
            for m in self.frozen_modules() + self.frozen_pretrained():
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

    # --- the training loop of a single-objective paper --------------------------------------------------
    def loss_terms(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Named, already weighted loss terms of one batch; their sum is minimised (single-objective papers)."""
        raise NotImplementedError

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self.loss_terms(batch)
        loss = torch.stack(list(terms.values())).sum()
        self.log_train_terms({**terms, "loss": loss}, batch_size(batch), progress_key="loss")
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.automatic_optimization and self.trainer is not None and self.trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=1)

    # --- optimizers and schedules (from config factories) --------------------------------------------
    @property
    def optimizer_steps_per_batch(self) -> int:
        """How many optimizer steps one training batch takes. Lightning's ``global_step`` counts those; the
        project's "step" counts batches (``lightning_modules.callbacks.training_steps``), and ``build_trainer``
        converts ``trainer.max_steps`` with this."""
        return 1

    def optimizer_parameters(self) -> dict[str, list[nn.Parameter]]:
        """One optimizer per entry (in this order): its trainable parameters. Default: every part's."""
        modules = [m for mods in self.parts().values() for m in mods]
        return {"model": self.trainable_parameters(modules)}

    def configure_optimizers(self) -> list[dict[str, Any]]:
        groups = self.optimizer_parameters()
        first = next(iter(groups))  # the main optimizer (GANs: G's); the others may be empty in a stage
        if not groups[first]:
            raise ValueError(
                f"stage '{self.stage_spec.name}' leaves no {first} parameter of model {self.model_name} trainable"
            )
        configs = []
        for params in groups.values():
            if not params:
                continue
            config: dict[str, Any] = {"optimizer": self.optimizer_factory(params)}
            if self.scheduler_cfg.get("factory") is not None:
                config["lr_scheduler"] = {
                    "scheduler": self.scheduler_cfg["factory"](config["optimizer"]),
                    "interval": str(self.scheduler_cfg.get("interval", "epoch")),
                    "frequency": 1,
                    **({"monitor": self.scheduler_cfg["monitor"]} if self.scheduler_cfg.get("monitor") else {}),
                }
            configs.append(config)
        return configs

    # --- samples and inference -----------------------------------------------------------------------
    def sample_images(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Named image rows in [0,1], [B,3,H,W] each (e.g. label | generated | real)."""
        raise NotImplementedError

    def generate(self, batch: Mapping[str, Any], **options: Any) -> torch.Tensor:
        """The inference call tasks use: the model's output for ``batch``, in :attr:`generate_range`
        (``[B, 3, H, W]`` images when :attr:`generates_images`)."""
        raise NotImplementedError

    #: what ``generate`` returns (the module-contract suite checks it): images ``[B, 3, H, W]`` in this range
    generates_images: bool = True
    generate_range: tuple[float, float] = (0.0, 1.0)

    def to_unit_images(self, images: torch.Tensor) -> torch.Tensor:
        """``generate``'s (and ``target_images``') range mapped to [0, 1] for metrics and files."""
        return images.clamp(0, 1)

    def target_images(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The ground truth ``generate`` is compared with (``paired_outputs`` models)."""
        raise NotImplementedError

    def summary_networks(self, h: int, w: int) -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]:
        """(name, network, example inputs) for every sub-network at input size ``h`` x ``w`` (``task=summary``)."""
        raise NotImplementedError

    # --- frozen pretrained networks and checkpoint metadata ------------------------------------------
    def frozen_pretrained(self) -> list[nn.Module]:
        """Pretrained networks that never train here (VGG loss networks, identity networks). They are rebuilt from
        their own weights at start-up, so checkpoints leave them out (~80 MB for VGG19) and loading puts the
        current ones back."""
        return []

    def non_persistent_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of :meth:`frozen_pretrained`."""
        frozen = {id(m) for m in self.frozen_pretrained()}
        return tuple(f"{name}." for name, m in self.named_modules() if name and id(m) in frozen)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        prefixes = self.non_persistent_prefixes()
        for key in [k for k in state if prefixes and k.startswith(prefixes)]:
            del state[key]
        write_meta(checkpoint, self.model_name, self.stage_spec.name, self.run_config)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(META_KEY, {})
        if meta.get("model") not in (None, self.model_name):
            raise ValueError(f"checkpoint is for model '{meta.get('model')}', this run is '{self.model_name}'")
        self.restore_non_persistent(checkpoint.get("state_dict", {}))

    # --- inference ------------------------------------------------------------------------------------
    def training_only_modules(self) -> list[nn.Module]:
        """Networks that only training uses (discriminators); :meth:`drop_training_networks` removes them."""
        return []

    def drop_training_networks(self) -> None:
        """Remove :meth:`training_only_modules` (after loading: their weights are in the checkpoint), so an
        inference model holds its generators only."""
        drop = {id(m) for m in self.training_only_modules() if m is not None}
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if id(child) in drop:
                    setattr(parent, name, None)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             strict: bool | None = None, **kwargs: Any) -> Any:
        """Lightning's spelling of :func:`lightning_modules.loading.load`: the module rebuilt from the config stored
        in the checkpoint (through ``conf/``, safely), in eval mode, without training-only networks unless
        ``training_networks=True``. Stops when the checkpoint is of another paper than ``cls``."""
        from lightning_modules.checkpoints import CheckpointError
        from lightning_modules.loading import load

        device = map_location if isinstance(map_location, (str, torch.device)) else None
        module = load(checkpoint_path, device=device, **kwargs)
        if not isinstance(module, cls):
            raise CheckpointError(f"{checkpoint_path} is a '{module.model_name}' checkpoint, not a {cls.__name__} "
                                  f"one: use {type(module).__name__}.load_from_checkpoint or "
                                  f"lightning_modules.load")
        return module

    def restore_non_persistent(self, state: dict[str, Any]) -> dict[str, Any]:
        """Fill the keys ``on_save_checkpoint`` left out with this module's current values (in place)."""
        prefixes = self.non_persistent_prefixes()
        for key, value in self.state_dict().items():
            if prefixes and key.startswith(prefixes) and key not in state:
                state[key] = value
        return state


#: ``model.update_order`` values: see :class:`GANModule`
UPDATE_ORDERS = ("official", "d_first")


class GANModule(SynthesisModule):
    """Manual optimisation: one generator step and one discriminator step per batch.

    ``update_order``:

    * ``official`` (official pix2pixHD ``train.py``, which Everybody Dance Now's ``train_fullts.py`` keeps): one
      forward computes every term with the current D (:meth:`gan_terms`); then ``loss_G`` backward and G's step,
      then D's gradients are cleared, ``loss_D`` backward and D's step.
    * ``d_first``: D's step on its terms, then G's terms against the updated D and G's step (each optimizer
      toggled around its own terms).

    Under fp16 mixed precision Lightning's precision plugin scales each backward and, at each optimizer's
    ``step``, unscales that optimizer's gradients, skips its step on inf/NaN and updates the scale, so G and D are
    scaled and skipped apart.
    """

    def __init__(self, stage: Mapping[str, Any], optimizer: OptimizerFactory,
                 scheduler: Mapping[str, Any] | None = None, ema: Mapping[str, Any] | None = None,
                 update_order: str = "d_first"):
        super().__init__(stage, optimizer, scheduler, ema)
        self.automatic_optimization = False
        if update_order not in UPDATE_ORDERS:
            raise ValueError(f"model.update_order={update_order!r} is not a known order; use one of "
                             f"{', '.join(UPDATE_ORDERS)} (official: G's step then D's, every term from one forward)")
        self.update_order = update_order

    def generator_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def discriminator_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def training_only_modules(self) -> list[nn.Module]:
        return self.discriminator_modules()

    def prepare_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Encode inputs once and run the generator; the result is shared by both loss hooks."""
        raise NotImplementedError

    def discriminator_loss(self, step: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def generator_loss(self, step: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @property
    def optimizer_steps_per_batch(self) -> int:
        """G's step and, where D has trainable parameters, D's: what Lightning's global_step adds per batch."""
        return sum(1 for params in self.optimizer_parameters().values() if params) or 1

    def gan_terms(self, step: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(D's terms, G's terms) from the current D, for the ``official`` order. Default: the two hooks in turn;
        a paper whose objective shares D's pass on the real image (``ConditionalGANObjective.terms``) overrides it."""
        return self.discriminator_loss(step), self.generator_loss(step)

    def optimizer_parameters(self) -> dict[str, list[nn.Parameter]]:
        """G's optimizer first, then D's (official pix2pixHD: two Adams with the same settings)."""
        return {"generator": self.trainable_parameters(self.generator_modules()),
                "discriminator": self.trainable_parameters(self.discriminator_modules())}

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
        """One generator and one discriminator step on ``batch`` in ``self.update_order``; returns the detached
        loss terms.

        Inside a Trainer, ``training_step`` passes ``manual_backward`` (precision scaling) and, for ``d_first``,
        toggles each optimizer's parameters; outside one (benchmarks, notebooks, tests) plain ``loss.backward()`` is
        used.
        """
        backward = backward or (lambda loss: loss.backward())
        step = self.prepare_batch(batch)
        logs: dict[str, torch.Tensor] = {}
        if self.update_order == "official" and opt_d is not None:
            self._official_steps(step, opt_g, opt_d, backward, logs)
        else:
            if opt_d is not None:
                self._optimizer_step(opt_d, self.discriminator_loss, step, backward, toggle, "loss_D", logs)
            self._optimizer_step(opt_g, self.generator_loss, step, backward, toggle, "loss_G", logs)
        self.update_ema()
        return logs

    def _official_steps(self, step: dict[str, Any], opt_g: Any, opt_d: Any,
                        backward: Callable[[torch.Tensor], None], logs: dict[str, torch.Tensor]) -> None:
        """Official pix2pixHD ``train.py``: all terms from one forward, G's step, then D's. D's terms see only the
        detached fake, so D's backward reaches no G parameter; whatever G's backward left in D's gradients is
        cleared before D's backward."""
        d_terms, g_terms = self.gan_terms(step)
        loss_g, loss_d = self._total(g_terms), self._total(d_terms)
        opt_g.zero_grad(set_to_none=True)
        backward(loss_g)
        opt_g.step()
        opt_d.zero_grad(set_to_none=True)
        backward(loss_d)
        opt_d.step()
        logs.update({k: v.detach() for k, v in {**d_terms, **g_terms}.items()})
        logs["loss_D"], logs["loss_G"] = loss_d.detach(), loss_g.detach()

    def _optimizer_step(self, optimizer: Any, loss_terms: Callable[[dict[str, Any]], dict[str, torch.Tensor]],
                        step: dict[str, Any], backward: Callable[[torch.Tensor], None], toggle: bool,
                        total_name: str, logs: dict[str, torch.Tensor]) -> None:
        """One optimizer's step on the sum of ``loss_terms(step)``; the detached terms and their sum go to ``logs``."""
        if toggle:
            self.toggle_optimizer(optimizer)
        terms = loss_terms(step)
        total = self._total(terms)
        optimizer.zero_grad(set_to_none=True)
        backward(total)
        optimizer.step()
        if toggle:
            self.untoggle_optimizer(optimizer)
        logs.update({k: v.detach() for k, v in terms.items()})
        logs[total_name] = total.detach()

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        opt_g, opt_d = self._optimizers()
        logs = self.gan_step(batch, opt_g, opt_d, backward=self.manual_backward, toggle=True)
        self.log_train_terms(logs, batch_size(batch), progress_key="loss_G")
        if self.scheduler_cfg.get("interval") == "step":
            self._step_schedulers()

    def on_train_epoch_end(self) -> None:
        """Manual optimisation: Lightning does not step the schedulers, so the module does (per epoch by default)."""
        if self.scheduler_cfg.get("interval", "epoch") == "epoch" and self._step_schedulers():
            self.log("train/lr", self._optimizers()[0].param_groups[0]["lr"], sync_dist=True)

    def _step_schedulers(self) -> bool:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return False
        monitor = self.scheduler_cfg.get("monitor")
        for sch in schedulers if isinstance(schedulers, list) else [schedulers]:
            if monitor:
                if monitor in self.trainer.callback_metrics:
                    sch.step(self.trainer.callback_metrics[monitor])
            else:
                sch.step()
        return True


def batch_size(batch: Any) -> int:
    """The batch dimension of the first tensor in ``batch`` (a dict, or a tuple/list of tensors)."""
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else [batch]
    for v in values:
        if isinstance(v, torch.Tensor):
            return int(v.shape[0])
    return 1
