#!/usr/bin/env python
"""Benchmark ``networks.pix2pixhd.instance_average_pool`` against a naive per-instance loop.

The naive reference mirrors the official pix2pixHD ``Encoder.forward`` (``models/networks.py``): a Python
loop over the unique instance ids, the batch items and the channels, averaging with fancy indexing. The
instance map is a Voronoi partition of the image from ``--instances`` random seeds (computed vectorised).

Usage: ``python scripts/bench_instance_pool.py --height 512 --width 1024 --instances 100``.
Import use: ``run(height, width, instances, channels, repeats) -> list[dict]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def voronoi_instance_map(
    height: int, width: int, instances: int, batch: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random instance map [B,1,H,W] (int64): each pixel gets the id of its nearest of ``instances`` seeds.

    Ids are distinct arbitrary integers (like pix2pixHD's Cityscapes ids, e.g. 26001), not 0..N-1.
    """
    maps = []
    n_pixels = height * width
    ys = torch.arange(height, dtype=torch.float32).repeat_interleave(width)
    xs = torch.arange(width, dtype=torch.float32).repeat(height)
    coords = torch.stack([ys, xs], dim=1)  # [H*W, 2]
    chunk = max(1, (1 << 23) // max(instances, 1))  # bounds the [chunk, N] distance matrix to ~32 MB
    for _ in range(batch):
        seeds = torch.rand(instances, 2, generator=generator) * torch.tensor([height, width])
        ids = torch.randperm(50_000, generator=generator)[:instances].to(torch.int64)
        nearest = torch.empty(n_pixels, dtype=torch.int64)
        for start in range(0, n_pixels, chunk):
            d = torch.cdist(coords[start : start + chunk], seeds)
            nearest[start : start + chunk] = d.argmin(dim=1)
        maps.append(ids[nearest].view(1, 1, height, width))
    return torch.cat(maps, dim=0)


def naive_instance_average_pool(features: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    """Official-pix2pixHD-style reference: loops over unique ids, batch items and channels."""
    out = features.clone()
    for i in torch.unique(inst).tolist():
        for b in range(features.shape[0]):
            idx = (inst[b : b + 1] == i).nonzero()  # [n, 4]
            if idx.numel() == 0:
                continue
            for j in range(features.shape[1]):
                rows, chans = idx[:, 0] + b, idx[:, 1] + j
                values = features[rows, chans, idx[:, 2], idx[:, 3]]
                out[rows, chans, idx[:, 2], idx[:, 3]] = values.mean()
    return out


def _time_ms(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.mean(times), result


def run(
    height: int = 512,
    width: int = 1024,
    instances: int = 100,
    channels: int = 3,
    repeats: int = 5,
    batch: int = 1,
    seed: int = 0,
) -> list[dict]:
    """Time both implementations; returns one dict per method (method, mean_ms, speedup, max_abs_diff).

    Raises ``RuntimeError`` if the vectorised result differs from the reference by 1e-5 or more.
    """
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from networks.pix2pixhd import instance_average_pool

    gen = torch.Generator().manual_seed(seed)
    inst = voronoi_instance_map(height, width, instances, batch=batch, generator=gen)
    features = torch.rand(batch, channels, height, width, generator=gen)
    with torch.no_grad():
        naive_ms, ref = _time_ms(lambda: naive_instance_average_pool(features, inst), repeats)
        fast_ms, out = _time_ms(lambda: instance_average_pool(features, inst), repeats)
    max_diff = (out - ref).abs().max().item()
    if not max_diff < 1e-5:
        raise RuntimeError(
            f"instance_average_pool disagrees with the naive reference: max abs diff {max_diff}"
        )
    n_found = int(torch.unique(inst).numel())
    common = {"height": height, "width": width, "instances": n_found, "channels": channels, "batch": batch}
    return [
        {
            "method": "naive loop (official pix2pixHD)",
            "mean_ms": naive_ms,
            "speedup": 1.0,
            "max_abs_diff": 0.0,
            **common,
        },
        {
            "method": "networks.pix2pixhd.instance_average_pool",
            "mean_ms": fast_ms,
            "speedup": naive_ms / fast_ms,
            "max_abs_diff": max_diff,
            **common,
        },
    ]


def format_table(rows: list[dict]) -> str:
    """Markdown table: method | mean ms | speed-up."""
    lines = ["| method | mean ms | speed-up |", "|---|---:|---:|"]
    lines += [f"| {r['method']} | {r['mean_ms']:.2f} | {r['speedup']:.1f}x |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = run(args.height, args.width, args.instances, args.channels, args.repeats, args.batch, args.seed)
    r = rows[0]
    print(
        f"instance_average_pool: B={r['batch']} C={r['channels']} {r['height']}x{r['width']}, "
        f"{r['instances']} instances, {args.repeats} repeats, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; max abs diff {rows[1]['max_abs_diff']:.2e}\n"
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
