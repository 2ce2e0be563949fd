#!/usr/bin/env python
"""X2Face reenactment speed at the paper's sizes (256x256, 8-level U-Nets, ngf 64, 128-d driving vector).

The setting of task=reenact: batch 1, the sources' embedded face computed once, each frame = driving network +
bilinear sampling of the embedded face (``X2Face.drive``). Also the full forward (embedding of 1 or 3 sources +
driving) per frame. Random weights (speed does not depend on them), a warm-up, then ``--frames`` timed frames.

    python scripts/bench_x2face.py                    # CPU
    python scripts/bench_x2face.py --device cuda --frames 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def main(argv: list[str] | None = None) -> list[dict]:
    import torch

    from networks.x2face import DrivingNet, EmbeddingNet, X2Face

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = X2Face(EmbeddingNet(), DrivingNet()).eval().requires_grad_(False).to(args.device)
    s = args.size
    driving = torch.rand(1, 3, s, s, device=args.device)
    rows = []

    def timed(name: str, fn) -> None:
        for _ in range(args.warmup):
            fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.frames):
            fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / args.frames
        rows.append({"setting": name, "ms_per_frame": 1000 * dt, "fps": 1 / dt})

    with torch.no_grad():
        for k in (1, 3):
            sources = torch.rand(1, k, 3, s, s, device=args.device)
            embedded, _ = model.embed(sources)
            timed(f"reenact frame ({k} source{'s' if k > 1 else ''} embedded once)",
                  lambda e=embedded: model.drive(e, model.driving(driving)[0]))
            timed(f"full forward, {k} source{'s' if k > 1 else ''}", lambda src=sources: model(driving, src))
    print(f"\nX2Face at {s}x{s} on {args.device} ({torch.get_num_threads()} threads), batch 1")
    print(f"{'setting':<44} {'ms/frame':>10} {'frames/s':>10}")
    for r in rows:
        print(f"{r['setting']:<44} {r['ms_per_frame']:>10.1f} {r['fps']:>10.2f}")
    return rows


if __name__ == "__main__":
    main()
