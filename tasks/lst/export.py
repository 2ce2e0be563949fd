"""task=export: the LST stylizer (encoder + linear transformation + decoder) as one TorchScript or ONNX file,
checked against the eager model.

    python run.py task=export model=lst task.ckpt_path=<transform run>/checkpoints/last.ckpt            # TorchScript
    python run.py task=export model=lst task.ckpt_path=... task.format=onnx      # needs onnx + onnxruntime installed

The exported graph is :class:`ExportableStylizer`: ``(content [1, 3, H, W], style [1, 3, Hs, Ws], alpha []) ->
stylised [1, 3, H, W]`` in [0, 1], any sizes (the content is replicate-padded to the encoder stride inside the graph
and cropped back, as :class:`networks.lst.LinearStylizer` does), ``alpha`` a 0-d float tensor in [0, 1]. It computes
exactly ``LinearStylizer.forward(content, style, alpha)``, in float32, exported on the CPU. The photo-realistic
guided filter is not part of it.

Usage of the files::

    m = torch.jit.load("stylizer.pt"); out = m(content, style, torch.tensor(1.0))
    sess = onnxruntime.InferenceSession("stylizer.onnx")
    out = sess.run(None, {"content": c, "style": s, "alpha": np.array(1.0, np.float32)})[0]

Verification: the written file is loaded back (``torch.jit.load`` / an onnxruntime CPU session) and run on a probe
pair (``task.probe_content`` / ``task.probe_style`` image files, or seeded random images of ``task.probe_size``)
at ``alpha=1``, and on a second pair of another size at ``alpha=0.5`` (to show no size was baked in); the max abs
difference to the eager stylizer is printed, and the task raises when it exceeds ``task.tolerance``.

TorchScript comes from ``torch.jit.trace`` (deprecated upstream in favour of torch.export, but still the format
that loads with nothing but ``torch``). ONNX uses the TorchScript-based exporter with dynamic height/width axes
(``task.onnx_dynamo=true``: the torch.export-based exporter, which needs ``onnxscript``). ``onnx`` and
``onnxruntime`` are optional: they are not condsynth dependencies.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from datamodules.atomic_writes import atomic_path
from networks.lst import LinearStylizer
from tasks.lst.stylize import load_stylizer, min_image_side, read_image

log = logging.getLogger(__name__)

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
INPUT_NAMES = ["content", "style", "alpha"]
OUTPUT_NAMES = ["stylized"]


class ExportableStylizer(nn.Module):
    """Trace-friendly :class:`LinearStylizer` forward: no Python branches on sizes (padding amounts are computed
    from the traced shapes, a zero pad when none is needed) and ``alpha`` as a tensor input."""

    def __init__(self, stylizer: LinearStylizer) -> None:
        super().__init__()
        self.encoder = stylizer.encoder
        self.transform = stylizer.transform
        self.decoder = stylizer.decoder
        self.stride = int(stylizer.total_stride)

    def forward(self, content: Tensor, style: Tensor, alpha: Tensor) -> Tensor:
        h, w = content.shape[-2], content.shape[-1]
        s = self.stride
        padded = F.pad(content, (0, (s - w % s) % s, 0, (s - h % s) % s), mode="replicate")
        c_feat = self.encoder(padded)
        t_style, style_mean = self.transform.style_statistics(self.encoder(style))
        feat = self.transform.apply_style(c_feat, t_style, style_mean)
        feat = alpha * feat + (1.0 - alpha) * c_feat
        return self.decoder(feat)[..., :h, :w].clamp(0.0, 1.0)


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """The tracer warns about the networks' input-shape checks (Python bools: they hold for every valid input)
    and that torch.jit is deprecated; neither concerns the exported graph, which is verified numerically."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=r".*Constant folding.*")
        yield


def _probe_pair(cfg: DictConfig, level: str) -> tuple[Tensor, Tensor]:
    content_path, style_path = cfg.task.get("probe_content"), cfg.task.get("probe_style")
    min_side = min_image_side(level)
    if content_path is not None or style_path is not None:
        if content_path is None or style_path is None:
            raise ValueError("set both task.probe_content and task.probe_style, or neither (random probe images)")
        return read_image(str(content_path), None, min_side), read_image(str(style_path), None, min_side)
    size = OmegaConf.to_container(cfg.task.probe_size) if OmegaConf.is_config(cfg.task.get("probe_size")) \
        else cfg.task.get("probe_size", [60, 84])
    try:
        h, w = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError) as err:
        raise ValueError(f"task.probe_size={size!r} must be [H, W] or one int") from err
    if min(h, w) < min_side:
        raise ValueError(f"task.probe_size={[h, w]}: the {level} model needs at least {min_side} pixels per side")
    g = torch.Generator().manual_seed(int(cfg.task.get("probe_seed", 0)))
    # smooth random images (low-resolution noise, upsampled) rather than white noise: closer to real inputs
    content = F.interpolate(torch.rand(1, 3, h // 4 + 1, w // 4 + 1, generator=g), size=(h, w), mode="bilinear")
    style = F.interpolate(torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g), size=(w, h), mode="bilinear")
    return content.clamp(0, 1), style.clamp(0, 1)


def _second_pair(content: Tensor, style: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """A pair of other sizes (content grows by 1.5 strides + 1 pixel, so its padding changes)."""
    h, w = content.shape[-2:]
    grow = stride + stride // 2 + 1
    c2 = F.interpolate(content, size=(h + grow, w + grow // 2 + 1), mode="bilinear").clamp(0, 1).flip(-1)
    s2 = F.interpolate(style, size=(style.shape[-2] + stride, style.shape[-1] + 3), mode="bilinear").clamp(0, 1)
    return c2, s2


# ------------------------------------------------------------------------------------------- formats
def export_torchscript(model: ExportableStylizer, example: tuple[Tensor, ...], path: str) -> None:
    with _quiet_tracing(), atomic_path(path, keep_extension=True) as tmp:
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, tmp)


def load_torchscript(path: str):
    with _quiet_tracing():
        module = torch.jit.load(path, map_location="cpu")
    module.eval()

    def run(content: Tensor, style: Tensor, alpha: float) -> Tensor:
        with torch.no_grad():
            return module(content, style, torch.tensor(float(alpha)))

    return run


def require_onnx(dynamo: bool) -> None:
    missing = [m for m in ("onnx", "onnxruntime", *(("onnxscript",) if dynamo else ()))
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(
            f"task.format=onnx needs {', '.join(missing)} (to export the file and verify it with onnxruntime); not "
            f"installed: pip install {' '.join(missing)} (optional, not condsynth dependencies), or use "
            f"task.format=torchscript"
        )


def export_onnx(model: ExportableStylizer, example: tuple[Tensor, ...], path: str, dynamo: bool = False,
                opset: int | None = None) -> None:
    kwargs: dict[str, Any] = {"input_names": INPUT_NAMES, "output_names": OUTPUT_NAMES, "dynamo": dynamo}
    if opset is not None:
        kwargs["opset_version"] = int(opset)
    if dynamo:
        from torch.export import Dim

        hw = {2: Dim.DYNAMIC, 3: Dim.DYNAMIC}
        kwargs["dynamic_shapes"] = {"content": hw, "style": dict(hw), "alpha": None}
    else:
        kwargs["dynamic_axes"] = {"content": {2: "height", 3: "width"}, "style": {2: "style_height", 3: "style_width"},
                                  "stylized": {2: "height", 3: "width"}}
    with _quiet_tracing(), atomic_path(path, keep_extension=True) as tmp:
        torch.onnx.export(model, example, tmp, **kwargs)


def load_onnx(path: str):
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(content: Tensor, style: Tensor, alpha: float) -> Tensor:
        feeds = {"content": content.numpy(), "style": style.numpy(), "alpha": np.asarray(alpha, dtype=np.float32)}
        return torch.from_numpy(session.run(None, feeds)[0])

    return run


# ------------------------------------------------------------------------------------------- task
def export(cfg: DictConfig) -> dict[str, Any]:
    """Export the stylizer of ``task.ckpt_path``; verify the written file against eager; return the report."""
    fmt = str(cfg.task.get("format", "torchscript")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"task.format={fmt} is unknown; use one of {list(FORMATS)}")
    tolerance = float(cfg.task.get("tolerance", 1e-4))
    dynamo = bool(cfg.task.get("onnx_dynamo", False))
    if fmt == "onnx":
        require_onnx(dynamo)
    path = cfg.task.get("output") or os.path.join(str(cfg.paths.run_dir), f"stylizer{FORMATS[fmt]}")
    path = os.fspath(str(path))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    stylizer = load_stylizer(cfg, "cpu")
    content, style = _probe_pair(cfg, stylizer.encoder.level)
    model = ExportableStylizer(stylizer).eval()
    example = (content, style, torch.tensor(1.0))
    if fmt == "torchscript":
        export_torchscript(model, example, path)
        run = load_torchscript(path)
    else:
        export_onnx(model, example, path, dynamo, cfg.task.get("opset"))
        run = load_onnx(path)

    c2, s2 = _second_pair(content, style, stylizer.total_stride)
    checks = []
    for c, s, alpha in ((content, style, 1.0), (c2, s2, 0.5)):
        with torch.no_grad():
            eager = stylizer(c, s, alpha)
        exported = run(c, s, alpha)
        if tuple(exported.shape) != tuple(eager.shape):
            raise RuntimeError(f"exported {fmt} model at {path} gives shape {tuple(exported.shape)}, eager gives "
                               f"{tuple(eager.shape)} (content {tuple(c.shape[-2:])})")
        diff = float((exported - eager).abs().max())
        checks.append({"content": list(c.shape[-2:]), "style": list(s.shape[-2:]), "alpha": alpha, "max_abs_diff": diff})
    worst = max(ch["max_abs_diff"] for ch in checks)
    lines = ", ".join(f"{ch['max_abs_diff']:.3g} (content {ch['content'][0]}x{ch['content'][1]}, style "
                      f"{ch['style'][0]}x{ch['style'][1]}, alpha {ch['alpha']})" for ch in checks)
    print(f"\ncondsynth: exported the {stylizer.encoder.level} stylizer to {path} ({fmt}); max abs difference vs "
          f"eager: {lines}; tolerance {tolerance:g}")
    if not worst <= tolerance:  # also catches NaN
        raise RuntimeError(f"exported {fmt} model {path} differs from eager by {worst:.3g} > task.tolerance="
                           f"{tolerance:g}")
    return {"path": path, "format": fmt, "max_abs_diff": worst, "checks": checks, "tolerance": tolerance}
