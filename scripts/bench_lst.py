#!/usr/bin/env python
"""Linear Style Transfer stylisation speed: frames per second per level (r31 / r41) and resolution.

The setting of task=stylize_video: batch 1, the style code computed once, each frame = encode + linear
transformation + decode (``LinearStylizer.stylize_with_code``), at the paper's full VGG widths and matrix size 32.
Random weights (speed does not depend on them), a warm-up, then ``--frames`` timed frames (device-synchronised).

    python scripts/bench_lst.py                                 # r31, r41 x 256x256, 512x512 on the CPU
    python scripts/bench_lst.py --device cuda --frames 50
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def build_stylizer(level: str, matrix_size: int = 32):
    from networks.lst import LEVEL_CHANNELS, LinearStylizer, LinearTransform, VGGDecoder, VGGEncoder

    encoder = VGGEncoder(level, weights=None)
    transform = LinearTransform(LEVEL_CHANNELS[level], matrix_size)
    decoder = VGGDecoder(level)
    return LinearStylizer(encoder, transform, decoder).eval().requires_grad_(False)


def bench_one(level: str, size: int, frames: int, warmup: int, device: str) -> dict:
    import torch

    torch.manual_seed(0)
    stylizer = build_stylizer(level).to(device)
    content = torch.rand(1, 3, size, size, device=device)
    style = torch.rand(1, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        t_style, style_mean = stylizer.style_code(style)
        for _ in range(warmup):
            stylizer.stylize_with_code(content, t_style, style_mean)
        sync()
        start = time.perf_counter()
        for _ in range(frames):
            stylizer.stylize_with_code(content, t_style, style_mean)
        sync()
        elapsed = time.perf_counter() - start
    per_frame = elapsed / frames
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu, {torch.get_num_threads()} thread(s)"
    return {"level": level, "resolution": f"{size}x{size}", "batch": 1, "frames": frames, "fps": 1.0 / per_frame,
            "ms_per_frame": 1000.0 * per_frame, "device": name}


def run(levels: Sequence[str] = ("r31", "r41"), sizes: Sequence[int] = (256, 512), frames: int = 5,
        warmup: int = 2, device: str = "cpu") -> list[dict]:
    """One row per (level, size)."""
    return [bench_one(level, int(size), int(frames), int(warmup), device) for level in levels for size in sizes]


def format_table(rows: Sequence[dict]) -> str:
    lines = ["| level | resolution | batch | frames/s | ms/frame | timed frames | device |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['level']} | {r['resolution']} | {r['batch']} | {r['fps']:.2f} | {r['ms_per_frame']:.1f} | "
                     f"{r['frames']} | {r['device']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", nargs="+", default=["r31", "r41"], choices=["r31", "r41"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    p.add_argument("--frames", type=int, default=5, help="timed frames per row")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.environ.setdefault("WANDB_MODE", "disabled")
    print(f"\n## LST stylisation speed (batch 1, style code computed once, full VGG widths, {args.device})\n")
    print(format_table(run(args.levels, args.sizes, args.frames, args.warmup, args.device)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
