"""Per-operator profile (torch.profiler, top operators by self CPU time) of a pix2pixHD training iteration and of
each network's forward, in fp32 and in bf16 autocast, so each speed lever is chosen from measured time.

    python scripts/profile_ops.py                         # demo widths, 128x256, top 12 operators per case
    python scripts/profile_ops.py --size paper --resolution 256 512 --top 20

A training iteration is the module's own manual-optimisation step (G and D, VGG loss) on a fixed random batch; each
case is warmed up once before the profiled run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def profile(fn: Callable[[], object], top: int, label: str) -> str:
    """``fn`` run once to warm up, then under torch.profiler; the ``top`` operators by self CPU time as Markdown."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    fn()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    lines = [f"\n### {label}\n", "| operator | calls | self CPU ms | share |", "|---|---:|---:|---:|"]
    for e in events[:top]:
        lines.append(f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1000:.1f} | "
                     f"{100 * e.self_cpu_time_total / total:.1f}% |")
    del torch
    return "\n".join(lines)


def cases(size: str, resolution: tuple[int, int]) -> list[tuple[str, Callable[[], object]]]:
    """(name, callable) for the training iteration and each network's forward, in fp32 and bf16 autocast."""
    import torch

    from lightning_modules.factory import build_module
    from tasks.config import compose_config

    h, w = resolution
    cfg = compose_config([f"size={size}", "model.losses.perceptual.vgg.weights=null", "dataset.label_nc=8"],
                         "/tmp/profile_ops")
    torch.manual_seed(0)
    module = build_module(cfg)
    label = torch.randint(0, int(cfg.model.label_nc), (1, 1, h, w))
    batch = {"label": label, "inst": label.clone(), "image": torch.rand(1, 3, h, w) * 2 - 1}
    g_opt, d_opt = (f(params) for f, params in zip(
        [torch.optim.Adam] * 2, [list(m.parameters()) for m in (module.netG, module.netD)], strict=True))

    def iteration() -> None:
        step = module.prepare_batch(batch)
        g_terms = module.generator_loss(step)
        g_opt.zero_grad(set_to_none=True)
        sum(g_terms.values()).backward()
        g_opt.step()
        d_terms = module.discriminator_loss(step)
        d_opt.zero_grad(set_to_none=True)
        sum(d_terms.values()).backward()
        d_opt.step()

    nets = [(name, net, inputs) for name, net, inputs in module.summary_networks(h, w)]
    out: list[tuple[str, Callable[[], object]]] = []
    for precision in ("fp32", "bf16"):
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext

        def run_iteration(ctx=ctx) -> None:
            with ctx():
                iteration()

        out.append((f"pix2pixHD training iteration ({precision}, {h}x{w})", run_iteration))
        for name, net, inputs in nets:
            def forward(net=net, inputs=inputs, ctx=ctx) -> None:
                with torch.inference_mode(), ctx():
                    net(*inputs)

            out.append((f"{name} forward ({precision}, {h}x{w})", forward))
    return out


def run(size: str = "demo", resolution: tuple[int, int] = (128, 256), top: int = 12) -> str:
    return "\n".join(profile(fn, top, label) for label, fn in cases(size, resolution))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="demo", choices=["tiny", "demo", "paper"])
    p.add_argument("--resolution", nargs=2, type=int, default=[128, 256], metavar=("H", "W"))
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args(argv)
    print("## per-operator profile (self CPU time)")
    print(run(args.size, tuple(args.resolution), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
