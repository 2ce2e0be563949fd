"""task=summary: build the model for the chosen model/stage/dataset without touching data and print one line per
sub-network: name, parameters (trainable in this stage), input -> output shapes.

Shapes come from a forward pass on PyTorch's ``meta`` device (no memory, no compute), so even the 2048x1024
Cityscapes local stage summarises instantly; a network whose forward needs real data falls back to a CPU pass.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from datamodules.transforms import training_size
from lightning_modules.factory import build_module


def _shape(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return "x".join(str(d) for d in x.shape)
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {_shape(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (list, tuple)):
        if x and isinstance(x[0], (list, tuple)):  # multi-scale discriminator: the prediction of each scale
            return "[" + ", ".join(_shape(s[-1]) for s in x) + "]"
        return "[" + ", ".join(_shape(v) for v in x) + "]"
    return type(x).__name__


def _forward_shapes(net: nn.Module, inputs: tuple[torch.Tensor, ...]) -> str:
    try:
        meta_net = copy.deepcopy(net).to("meta")
        with torch.no_grad():
            out = meta_net(*[t.to("meta") for t in inputs])
    except (NotImplementedError, RuntimeError):
        with torch.no_grad():
            out = net(*inputs)
    return _shape(out)


def summarize(cfg: DictConfig) -> list[dict[str, Any]]:
    module = build_module(cfg, for_inference=True)
    module.apply_stage_freezing()
    stride = max(int(getattr(module, "total_stride", 1)), int(cfg.dataset.get("size_multiple", 1)))
    h, w = training_size(tuple(cfg.dataset.image_size), float(cfg.stage.resolution_scale), stride)
    rows = []
    for name, net, inputs in module.summary_networks(h, w):
        total = sum(p.numel() for p in net.parameters())
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        rows.append({
            "name": name,
            "type": type(net).__name__,
            "params": total,
            "trainable": trainable,
            "input": " + ".join(_shape(t) for t in inputs),
            "output": _forward_shapes(net, inputs),
        })
    return rows


def summary(cfg: DictConfig) -> list[dict[str, Any]]:
    rows = summarize(cfg)
    print(f"\nmodel={cfg.model.name} stage={cfg.stage.name} dataset={cfg.dataset.name} size={cfg.size.name}")
    header = f"{'sub-network':<24} {'type':<24} {'params':>12} {'trainable':>12}  input -> output"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<24} {r['type']:<24} {r['params']:>12,} {r['trainable']:>12,}  {r['input']} -> {r['output']}")
    total = sum(r["params"] for r in rows)
    print(f"{'total':<24} {'':<24} {total:>12,}")
    return rows
