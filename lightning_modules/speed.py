"""Speed levers for a built module (config node ``speed``; docs/speed-and-precision.md).

* ``channels_last``: every 4-D weight in NHWC memory format; convolutions then produce NHWC activations, which the
  CPU (oneDNN) and tensor-core GPU kernels run faster. Outputs equal fp32 NCHW within float rounding.
* ``checkpoint_activations``: ``generator`` recomputes every residual block of the networks in the backward pass
  instead of keeping its activations (``torch.utils.checkpoint``, non-reentrant), ``all`` also every
  discriminator block; ``false`` keeps them. Exact: gradients equal the plain run's bit for bit in fp32; less
  memory, one more forward of those blocks per step.
* ``compile``: ``torch.compile`` each network in place (``nn.Module.compile``: parameter names, hence checkpoints,
  unchanged). The first steps are slow while it compiles; outputs equal eager within float rounding.

Mixed precision is Lightning's ``trainer.precision`` (``bf16-mixed`` on CPU, ``16-mixed`` on GPU), and the
inference tasks run under ``torch.inference_mode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def networks_of(module: Any) -> list[nn.Module]:
    """The distinct top-level networks of a condsynth module: its parts and frozen pretrained networks, leaving out
    any that lies inside another one of them."""
    candidates: list[nn.Module] = []
    for mods in module.parts().values():
        candidates += [m for m in mods if m is not None]
    candidates += list(module.frozen_pretrained())
    unique = list({id(m): m for m in candidates}.values())
    inside = {id(sub) for m in unique for sub in m.modules() if sub is not m}
    return [m for m in unique if id(m) not in inside]


#: ``speed.checkpoint_activations`` values
CHECKPOINT_ACTIVATIONS = (False, "generator", "all")


def checkpoint_activations(module: nn.Module, which: Any) -> None:
    """Set the ``checkpoint_activations`` flag of the residual blocks (``generator``) and also the discriminator
    blocks (``all``) of the trained networks (frozen pretrained networks never need gradients)."""
    from networks.blocks import ResnetBlock
    from networks.discriminators import NLayerDiscriminator

    if which not in CHECKPOINT_ACTIVATIONS:
        raise ValueError(f"speed.checkpoint_activations={which!r} is not one of false, generator, all")
    kinds: tuple[type, ...] = {False: (), "generator": (ResnetBlock,), "all": (ResnetBlock, NLayerDiscriminator)}[which]
    frozen = {id(m) for net in getattr(module, "frozen_pretrained", list)() for m in net.modules()}
    for sub in module.modules():
        if isinstance(sub, kinds) and id(sub) not in frozen:
            sub.checkpoint_activations = True


def apply_speed(module: nn.Module, channels_last: bool = False, compile: bool = False,
                compile_mode: str | None = None, activations: Any = False) -> nn.Module:
    """Apply the levers to ``module`` in place and return it."""
    checkpoint_activations(module, activations)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    if compile:
        for net in networks_of(module):
            net.compile(mode=compile_mode)
    return module


def apply_speed_config(module: nn.Module, speed: Mapping[str, Any] | None) -> nn.Module:
    """:func:`apply_speed` with the run config's ``speed`` node (absent or null: nothing changes)."""
    speed = dict(speed or {})
    unknown = sorted(set(speed) - {"channels_last", "compile", "compile_mode", "checkpoint_activations"})
    if unknown:
        raise ValueError(f"speed.{unknown[0]} is not a speed option; the options are speed.channels_last, "
                         f"speed.compile, speed.compile_mode and speed.checkpoint_activations (conf/config.yaml)")
    return apply_speed(module, bool(speed.get("channels_last", False)), bool(speed.get("compile", False)),
                       speed.get("compile_mode"), speed.get("checkpoint_activations") or False)
