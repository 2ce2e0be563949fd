#!/usr/bin/env python
"""Speed-ups over plain fp32 eager PyTorch (what the official code runs), per network and setting.

Networks: pix2pixHD's generator (inference), LST stylisation at r41 and r31 (style code computed once, as in
``task=stylize_video``) and a pix2pixHD training iteration (G, D with num_D 3, E and VGG19 at the paper's widths).
Each setting is a copy of the same network with the same weights. All settings of a network run in this one
process, interleaved (repeat 1 of every setting, then repeat 2, ...), and the table gives the median time over the
repeats, its speed-up over the baseline, the peak memory of one call and the largest output difference from the
baseline (inference: the output image; training: the first iteration's loss terms, every setting starting from
the same weights).

Peak memory: on a GPU ``torch.cuda.max_memory_allocated`` of one call (weights included); on the CPU the rise of
the process's peak resident memory over its resident memory before one call (activations and temporaries).

The machine's other load shows in the times: run on an idle machine, or compare only within one table.

    python scripts/bench_speed.py                   # CPU: G 128x256, LST 256x256, training step 128x256
    python scripts/bench_speed.py --quick           # smaller sizes, fewer repeats
    python scripts/bench_speed.py --compile         # adds torch.compile rows (slow to compile)
    python scripts/bench_speed.py --device cuda     # G 1024x2048 (local enhancer), LST 512x512, training 1024x2048
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from lightning_modules.speed import apply_speed  # noqa: E402


@dataclass
class Setting:
    """One way of running the network: ``run()`` does one timed call and returns its output (a tensor, or a dict
    of loss terms for training)."""

    name: str
    run: Callable[[], Any]
    times: list[float] = field(default_factory=list)
    peak_mb: float = float("nan")
    max_diff: float = float("nan")


# ------------------------------------------------------------------------------------------- measuring
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rss_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _peak_mb(run: Callable[[], Any], device: str) -> float:
    """Peak memory of one call (see the module docstring)."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back so the next call's peak shows
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
    except OSError:
        return float("nan")
    before = _rss_kb("VmRSS")
    run()
    return (_rss_kb("VmHWM") - before) / 1024


def _max_diff(out: Any, ref: Any) -> float:
    if isinstance(out, dict):
        return max(abs(float(out[k]) - float(ref[k])) for k in ref)
    return float((out.float() - ref.float()).abs().max())


def measure(settings: list[Setting], repeats: int, warmup: int, device: str,
            reference: Callable[[], tuple[Any, list[Any]]] | None = None) -> list[Setting]:
    """Warm up, compare outputs, measure peak memory, then time every setting interleaved; times in ms."""
    if reference is not None:
        ref, outs = reference()
        for s, out in zip(settings, outs, strict=True):
            s.max_diff = _max_diff(out, ref)
    for s in settings:
        for _ in range(warmup):
            s.run()
    if reference is None:
        ref = settings[0].run()
        for s in settings:
            s.max_diff = _max_diff(s.run(), ref)
    for s in settings:
        s.peak_mb = _peak_mb(s.run, device)
    for _ in range(repeats):
        for s in settings:
            _sync(device)
            t = time.perf_counter()
            s.run()
            _sync(device)
            s.times.append(1000 * (time.perf_counter() - t))
    return settings


def format_table(title: str, settings: list[Setting], unit: str = "ms") -> str:
    base = statistics.median(settings[0].times)
    lines = [f"\n## {title}\n", f"| setting | median {unit} | speed-up | peak MB | max abs diff |", "|---|---:|---:|---:|---:|"]
    for s in settings:
        med = statistics.median(s.times)
        lines.append(f"| {s.name} | {med:.1f} | {base / med:.2f}x | {s.peak_mb:.0f} | {s.max_diff:.2e} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- settings
@contextlib.contextmanager
def _autocast(device: str, enabled: bool) -> Iterator[None]:
    dtype = torch.float16 if device.startswith("cuda") else torch.bfloat16
    with torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype, enabled=enabled):
        yield


def _half_name(device: str) -> str:
    return "fp16 autocast" if device.startswith("cuda") else "bf16 autocast"


def _inference_settings(net: torch.nn.Module, call: Callable[[torch.nn.Module], Any], device: str,
                        use_compile: bool, extra: list[tuple[str, torch.nn.Module, bool]] = ()) -> list[Setting]:
    """fp32 eager under no_grad (baseline), then each lever alone and the best combination."""
    def setting(name: str, model: torch.nn.Module, inference: bool = False, half: bool = False) -> Setting:
        def run() -> Any:
            ctx = torch.inference_mode() if inference else torch.no_grad()
            with ctx, _autocast(device, half):
                return call(model)

        return Setting(name, run)

    def variant(channels_last: bool = False, compiled: bool = False) -> torch.nn.Module:
        model = apply_speed(copy.deepcopy(net), channels_last=channels_last)
        if compiled:  # LST's stylizer is called through stylize_with_code, not forward: compile its networks
            for part in (model.children() if hasattr(model, "stylize_with_code") else [model]):
                part.compile()
        return model

    cl = variant(channels_last=True)
    settings = [setting("fp32 eager, no_grad (baseline)", net)]
    settings += [setting(name, model, inference) for name, model, inference in extra]
    settings += [setting("inference_mode", net, inference=True),
                 setting("channels_last", cl),
                 setting(_half_name(device), net, half=True),
                 setting(f"channels_last + {_half_name(device)} + inference_mode", cl, inference=True, half=True),
                 setting("channels_last + inference_mode", cl, inference=True)]
    if use_compile:
        settings += [setting("torch.compile", variant(compiled=True)),
                     setting("channels_last + torch.compile + inference_mode", variant(True, True), inference=True)]
    return settings


def bench_generator(size: tuple[int, int], device: str, repeats: int, warmup: int, use_compile: bool) -> str:
    """pix2pixHD G inference: the global generator at the paper's widths (CPU), the local enhancer on a GPU."""
    from networks.pix2pixhd import GlobalGenerator, LocalEnhancer

    torch.manual_seed(0)
    input_nc = 36  # Cityscapes: 35 label classes + the instance boundary map
    if device.startswith("cuda"):
        net = LocalEnhancer(input_nc=input_nc, output_nc=3, ngf=32, n_downsample_global=4, n_blocks_global=9,
                            n_local_enhancers=1, n_blocks_local=3, norm="instance")
        name = "local enhancer (ngf 32, G1 ngf 64)"
    else:
        net = GlobalGenerator(input_nc=input_nc, output_nc=3, ngf=64, n_downsampling=4, n_blocks=9, norm="instance")
        name = "global generator (ngf 64, 9 blocks)"
    net = net.to(device).eval()
    x = torch.randn(1, input_nc, *size, device=device)
    settings = _inference_settings(net, lambda m: m(x), device, use_compile)
    measure(settings, repeats, warmup, device)
    return format_table(f"pix2pixHD G inference: {name}, {size[0]}x{size[1]}, batch 1, {device}", settings)


def bench_lst(level: str, size: int, device: str, repeats: int, warmup: int, use_compile: bool) -> str:
    """LST stylisation of one frame with a precomputed style code (full VGG widths, matrix 32)."""
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import bench_lst

    from networks.lst import VGGDecoder, VGGEncoder

    torch.manual_seed(0)
    stylizer = bench_lst.build_stylizer(level).to(device)
    content = torch.rand(1, 3, size, size, device=device)
    with torch.no_grad():
        t_style, style_mean = stylizer.style_code(torch.rand(1, 3, size, size, device=device))

    def call(model: torch.nn.Module) -> torch.Tensor:
        return model.stylize_with_code(content, t_style, style_mean)

    class NotInPlace(torch.nn.Module):
        """The stylizer with non-in-place ReLUs (this project before the in-place change)."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def stylize_with_code(self, *args: Any) -> torch.Tensor:
            old = VGGEncoder.inplace_activations, VGGDecoder.inplace_activations
            VGGEncoder.inplace_activations = VGGDecoder.inplace_activations = False
            try:
                return self.inner.stylize_with_code(*args)
            finally:
                VGGEncoder.inplace_activations, VGGDecoder.inplace_activations = old

    settings = _inference_settings(stylizer, call, device, use_compile,
                                   extra=[("ReLU not in place (before)", NotInPlace(stylizer), False)])
    measure(settings, repeats, warmup, device)
    fps = ", ".join(f"{s.name.split(' (')[0]}: {1000 / statistics.median(s.times):.2f} fps" for s in settings[:1])
    return format_table(f"LST {level} stylisation, {size}x{size}, batch 1, {device} ({fps})", settings)


class _ScaledOptimizer:
    """``optimizer`` stepped through a GradScaler (fp16 on a GPU), as Lightning's precision plugin does per step."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        self.optimizer, self.scaler = optimizer, scaler

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()


def bench_training(size: tuple[int, int], device: str, repeats: int, warmup: int, use_compile: bool) -> str:
    """One pix2pixHD training iteration (G with E, D num_D 3, VGG19; the paper's widths; batch 1)."""
    from unittest import mock

    from datamodules.pix2pixhd import SyntheticScenesDataset
    from lightning_modules.factory import build_module
    from tasks.config import compose_config

    stage = "local" if device.startswith("cuda") else "global"
    cfg = compose_config([f"stage={stage}", "size=paper", "model.losses.perceptual.vgg.weights=null",
                          "dataset.label_nc=35", "trainer=cpu"], "/tmp/condsynth-bench-speed")
    cfg.stage.requires_init = False
    cfg.stage.init_from = None
    torch.manual_seed(0)
    base = build_module(cfg).to(device)
    ds = SyntheticScenesDataset(num_samples=1, image_size=size, label_nc=35, seed=0)
    batch = {k: ds[0][k].unsqueeze(0).to(device) for k in ("label", "inst", "image")}
    half = _half_name(device)

    def make(order: str = "official", channels_last: bool = False, amp: bool = False, compiled: bool = False,
             as_official_code: bool = False) -> Callable[[], dict[str, torch.Tensor]]:
        module = copy.deepcopy(base)
        module.update_order = order
        apply_speed(module, channels_last=channels_last, compile=compiled)
        opt_g, opt_d = [c["optimizer"] for c in module.configure_optimizers()]
        backward = None
        if amp and device.startswith("cuda"):
            scaler = torch.amp.GradScaler("cuda")
            opt_g, opt_d = _ScaledOptimizer(opt_g, scaler), _ScaledOptimizer(opt_d, scaler)

            def backward(loss: torch.Tensor) -> None:
                scaler.scale(loss).backward()

        def run() -> dict[str, torch.Tensor]:
            # the official code lets G's pass through D build D's weight gradients too (then zeroes them)
            plain = mock.patch("losses.conditional_gan.parameters_frozen", lambda net: contextlib.nullcontext()) \
                if as_official_code else contextlib.nullcontext()
            with plain, _autocast(device, amp):
                return module.gan_step(batch, opt_g, opt_d, backward=backward)

        return run

    specs = [("official order as the official code, fp32 eager (baseline)", dict(as_official_code=True)),
             ("d_first (this project before: 4 D passes)", dict(order="d_first")),
             ("update_order=official (1 real D pass, no D grads in G's pass)", {}),
             ("+ channels_last", dict(channels_last=True)),
             (f"+ {half}", dict(amp=True)),
             (f"+ channels_last + {half}", dict(channels_last=True, amp=True))]
    if use_compile:
        specs += [("+ channels_last + torch.compile", dict(channels_last=True, compiled=True))]

    def reference() -> tuple[dict, list[dict]]:
        """First iteration of every setting from the same weights (fresh copies)."""
        outs = [{k: float(v) for k, v in make(**kw)().items()} for _, kw in specs]
        return outs[0], outs

    settings = [Setting(name, make(**kw)) for name, kw in specs]
    measure(settings, repeats, warmup, device, reference=reference)
    return format_table(f"pix2pixHD training iteration (stage {stage}, paper widths, {size[0]}x{size[1]}, batch 1, "
                        f"{device}; diff = first iteration's loss terms)", settings)


# ------------------------------------------------------------------------------------------- main
def run(quick: bool = False, device: str = "cpu", use_compile: bool = False, repeats: int | None = None,
        only: list[str] | None = None) -> str:
    cuda = device.startswith("cuda")
    reps = repeats or (3 if quick else 5)
    warm = 1 if quick and not use_compile else 2
    g_size = (1024, 2048) if cuda else ((64, 128) if quick else (128, 256))
    lst_size = 512 if cuda else (128 if quick else 256)
    train_size = (1024, 2048) if cuda else ((64, 128) if quick else (128, 256))
    jobs = {
        "generator": lambda: bench_generator(g_size, device, reps, warm, use_compile),
        "lst_r41": lambda: bench_lst("r41", lst_size, device, reps, warm, use_compile),
        "lst_r31": lambda: bench_lst("r31", lst_size, device, reps, warm, use_compile),
        "training": lambda: bench_training(train_size, device, reps, warm, use_compile),
    }
    threads = "" if cuda else f", {torch.get_num_threads()} CPU thread(s)"
    out = [f"# speed-ups over plain fp32 eager ({device}{threads}; medians of {reps} interleaved repeats)"]
    print(out[0], flush=True)
    for name, job in jobs.items():
        if only and name not in only:
            continue
        out.append(job())
        print(out[-1], flush=True)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true", help="add torch.compile rows")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--only", nargs="+", choices=["generator", "lst_r41", "lst_r31", "training"])
    args = p.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device} but torch sees no CUDA device; use --device cpu", file=sys.stderr)
        return 2
    run(args.quick, args.device, args.compile, args.repeats, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
