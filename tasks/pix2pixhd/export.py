"""task=export for pix2pixHD: the generator with its input encoding as one TorchScript or ONNX file, checked against
eager (as the official ``test.py --export_onnx`` exported the inference model taking the label and instance maps).

    python run.py task=export task.ckpt_path=<pix2pixhd ckpt>                       # TorchScript (generator.pt)
    python run.py task=export task.ckpt_path=<pix2pixhd ckpt> task.format=onnx      # needs onnx + onnxruntime

The exported graph is :class:`ExportableGenerator`: ``(label [B, 1, H, W] int64 ids, inst [B, 1, H, W] int64 ids)
-> image [B, 3, H, W] in [-1, 1]``, H and W multiples of the generator's stride (``model.size_multiple``). It
one-hot encodes the labels, adds the instance boundary map (when ``model.use_instance``) and, when the model uses
instance features, zero features (``feature_mode=zeros``: per-instance codes are data-dependent and stay in
Python). Ids must lie in ``[0, label_nc)``: the graph does not check them (the eager path does).

Verification: the written file is loaded back and run on seeded random maps of ``task.probe_size`` (rounded up to
the stride) and of a second size; the max abs difference to ``module.generate(..., "zeros")`` is printed and the
task fails above ``task.tolerance``. :func:`time_inference` times eager, TorchScript and ONNX on one input (the
bench calls it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from datamodules.atomic_writes import atomic_path
from tasks.inference import load_for_inference, require_checkpoint

log = logging.getLogger(__name__)

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
INPUT_NAMES = ["label", "inst"]
OUTPUT_NAMES = ["image"]
Runner = Callable[[Tensor, Tensor], Tensor]


def boundary_map(inst: Tensor) -> Tensor:
    """Trace-friendly :func:`networks.label_encoding.instance_boundary_map` (no in-place writes): 1 where a
    4-neighbour has another id."""
    h = (inst[..., :, 1:] != inst[..., :, :-1]).float()
    v = (inst[..., 1:, :] != inst[..., :-1, :]).float()
    edge = torch.maximum(F.pad(h, (1, 0)), F.pad(h, (0, 1)))
    return torch.maximum(edge, torch.maximum(F.pad(v, (0, 0, 1, 0)), F.pad(v, (0, 0, 0, 1))))


class ExportableGenerator(nn.Module):
    """The generator of a :class:`lightning_modules.pix2pixhd.Pix2PixHDModule` with the input encoding in the graph."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.generator = module.inference_generator()
        self.label_nc = int(module.label_nc)
        self.use_instance = bool(module.use_instance)
        self.feat_num = int(module.feat_num) if module.use_features else 0
        self.register_buffer("class_ids", torch.arange(self.label_nc).view(1, -1, 1, 1), persistent=False)

    def forward(self, label: Tensor, inst: Tensor) -> Tensor:
        x = (label.long() == self.class_ids).float()
        parts = [x]
        if self.use_instance:
            parts.append(boundary_map(inst.long()))
        if self.feat_num:
            parts.append(x.new_zeros(x.shape[0], self.feat_num, x.shape[2], x.shape[3]))
        return self.generator(torch.cat(parts, dim=1))


def probe_maps(label_nc: int, size: tuple[int, int], seed: int, batch: int = 1) -> tuple[Tensor, Tensor]:
    """Seeded random label and instance maps ([B, 1, H, W] int64) with blocky regions (so edges are not everywhere)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    coarse = (max(1, h // 4), max(1, w // 4))
    label = torch.randint(0, label_nc, (batch, 1, *coarse), generator=g)
    inst = torch.randint(0, 4, (batch, 1, *coarse), generator=g) + 1000 * label
    up = lambda t: F.interpolate(t.float(), size=(h, w), mode="nearest").long()  # noqa: E731
    return up(label), up(inst)


def _round_up(size: list[int] | tuple[int, ...], multiple: int) -> tuple[int, int]:
    return tuple(-(-int(s) // multiple) * multiple for s in size)  # type: ignore[return-value]


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Silence the tracer's warnings about the networks' shape checks (they hold for every valid input) and
    torch.jit's deprecation notes; the exported graph is verified numerically instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=r".*Constant folding.*")
        # instance norm always normalises with the input's own statistics: "train=True" is its eval behaviour too
        warnings.filterwarnings("ignore", message=r".*'instance_norm' is set to train=True.*")
        yield


def export_file(model: ExportableGenerator, example: tuple[Tensor, Tensor], path: str, fmt: str,
                opset: int | None = None) -> None:
    """Write ``model`` as TorchScript (traced) or ONNX (dynamic batch, height and width) to ``path`` atomically."""
    with quiet_tracing(), atomic_path(path, keep_extension=True) as tmp, torch.no_grad():
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(model, example, check_trace=False), tmp)
            return
        axes = {"label": {0: "batch", 2: "height", 3: "width"}, "inst": {0: "batch", 2: "height", 3: "width"},
                "image": {0: "batch", 2: "height", 3: "width"}}
        kwargs: dict[str, Any] = {"input_names": INPUT_NAMES, "output_names": OUTPUT_NAMES, "dynamic_axes": axes,
                                  "dynamo": False}
        if opset is not None:
            kwargs["opset_version"] = int(opset)
        torch.onnx.export(model, example, tmp, **kwargs)


def load_runner(path: str, fmt: str) -> Runner:
    """``(label, inst) -> image`` of an exported file (TorchScript, or an onnxruntime CPU session)."""
    if fmt == "torchscript":
        with quiet_tracing():
            scripted = torch.jit.load(path, map_location="cpu").eval()

        def run_ts(label: Tensor, inst: Tensor) -> Tensor:
            with torch.no_grad():
                return scripted(label, inst)

        return run_ts
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run_onnx(label: Tensor, inst: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {"label": label.numpy(), "inst": inst.numpy()})[0])

    return run_onnx


def onnx_missing() -> list[str]:
    """The optional ONNX packages (``pip install condsynth[export]``) that are not installed."""
    return [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]


def time_inference(module: nn.Module, size: tuple[int, int], repeats: int = 5, batch: int = 1,
                   formats: tuple[str, ...] = ("eager", "torchscript", "onnx")) -> dict[str, float]:
    """Median seconds per forward of the pix2pixHD generator (with its input encoding) on CPU: eager,
    TorchScript and ONNX (skipped when onnx/onnxruntime are missing), interleaved round by round. ``module``: a
    Pix2PixHDModule in eval mode; ``size`` [H, W] a multiple of its stride."""
    model = ExportableGenerator(module).eval().cpu()
    label, inst = probe_maps(model.label_nc, size, seed=0, batch=batch)
    runners: dict[str, Runner] = {}
    with tempfile.TemporaryDirectory() as folder:
        for fmt in formats:
            if fmt == "eager":
                runners[fmt] = lambda a, b: model(a, b)
            elif fmt == "onnx" and onnx_missing():
                log.info("time_inference: onnx skipped (%s not installed)", ", ".join(onnx_missing()))
            else:
                path = os.path.join(folder, f"generator{FORMATS[fmt]}")
                export_file(model, (label, inst), path, fmt)
                runners[fmt] = load_runner(path, fmt)
        times: dict[str, list[float]] = {k: [] for k in runners}
        with torch.inference_mode():
            for run in runners.values():  # warm-up
                run(label, inst)
            for _ in range(repeats):
                for name, run in runners.items():
                    start = time.perf_counter()
                    run(label, inst)
                    times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def export(cfg: DictConfig) -> dict[str, Any]:
    """Export the generator of ``task.ckpt_path``; verify the file against eager; return the report."""
    fmt = str(cfg.task.get("format", "torchscript")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"task.format={fmt} is unknown; use one of {list(FORMATS)}")
    if fmt == "onnx" and onnx_missing():
        raise ModuleNotFoundError(
            f"task.format=onnx needs {', '.join(onnx_missing())}: pip install 'condsynth[export]' (optional extra), "
            f"or use task.format=torchscript")
    tolerance = float(cfg.task.get("tolerance", 1e-4))
    path = str(cfg.task.get("output") or os.path.join(str(cfg.paths.run_dir), f"generator{FORMATS[fmt]}"))
    module = load_for_inference(cfg, require_checkpoint(cfg)).cpu()
    model = ExportableGenerator(module).eval()
    stride = int(module.total_stride)
    first = _round_up(list(cfg.task.get("probe_size") or [stride, stride]), stride)
    second = (first[0] + stride, first[1] + 2 * stride)
    seed = int(cfg.task.get("probe_seed", 0))
    example = probe_maps(model.label_nc, first, seed)
    export_file(model, example, path, fmt, cfg.task.get("opset"))
    run = load_runner(path, fmt)
    checks = []
    for i, size in enumerate((first, second)):
        label, inst = probe_maps(model.label_nc, size, seed + i, batch=1 + i)
        with torch.no_grad():
            eager = module.generate({"label": label, "inst": inst}, "zeros")
        exported = run(label, inst)
        if tuple(exported.shape) != tuple(eager.shape):
            raise RuntimeError(f"exported {fmt} generator {path} gives shape {tuple(exported.shape)}, eager "
                               f"{tuple(eager.shape)}")
        checks.append({"size": list(size), "batch": 1 + i, "max_abs_diff": float((exported - eager).abs().max())})
    worst = max(c["max_abs_diff"] for c in checks)
    text = ", ".join(f"{c['max_abs_diff']:.3g} ({c['batch']}x{c['size'][0]}x{c['size'][1]})" for c in checks)
    print(f"\ncondsynth: exported the pix2pixHD generator to {path} ({fmt}); max abs difference vs eager: {text}; "
          f"tolerance {tolerance:g}")
    if not worst <= tolerance:  # also catches NaN
        raise RuntimeError(f"exported {fmt} generator {path} differs from eager by {worst:.3g} > task.tolerance="
                           f"{tolerance:g}")
    return {"path": path, "format": fmt, "max_abs_diff": worst, "checks": checks, "tolerance": tolerance,
            "inputs": list(INPUT_NAMES)}
