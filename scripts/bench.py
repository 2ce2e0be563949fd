#!/usr/bin/env python
"""`make bench`: throughput and peak memory per model/stage, instance pooling vs a naive loop, and LST stylisation
frames/s (r31/r41 at 256x256 and 512x512; scripts/bench_lst.py), and Everybody Dance Now's label rendering, transfer
frames/s and pose extraction frames/s (scripts/bench_edn.py), then the speed-up of each speed lever over plain fp32
eager for pix2pixHD G inference, LST r41/r31 stylisation and a pix2pixHD training iteration (scripts/bench_speed.py;
``--quick``, ``--compile``, ``--skip-speed``), and a per-operator profile of the training iteration and each network
in fp32 and bf16 (scripts/profile_ops.py; ``--skip-profile``).

Each training row runs in its own subprocess (so peak memory is that row's alone): it composes the real config
(`size=demo` unless --size paper), builds the module and a fixed synthetic batch, and times full training steps
(D step + G step) after warm-up. A baseline measured in the same run sits beside them: a torchvision ResNet-18
train step at the same batch and resolution, so numbers from different machines can be compared by ratio.
Peak memory is the process's max RSS on CPU, or torch.cuda.max_memory_allocated on a GPU.

    python scripts/bench.py                       # all rows, CPU, demo sizes
    python scripts/bench.py --device cuda --size paper --stages global
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def _peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_one(model: str, stage: str, size: str, batch: int, steps: int, device: str) -> dict:
    import torch

    from lightning_modules.factory import build_module
    from tasks.config import compose_config

    torch.manual_seed(0)
    if model == "resnet18-baseline":
        import torchvision

        cfg = compose_config([f"size={size}", f"stage={stage}"], "/tmp/condsynth-bench")
        h, w = _train_size(cfg)
        net = torchvision.models.resnet18(num_classes=10).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        x = torch.randn(batch, 3, h, w, device=device)
        y = torch.randint(0, 10, (batch,), device=device)

        def step() -> None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    else:
        overrides = [f"model={model}", f"stage={stage}", f"size={size}", "model.losses.perceptual.vgg.weights=null"]
        cfg = compose_config(overrides, "/tmp/condsynth-bench")
        if cfg.stage.get("requires_init"):
            cfg.stage.requires_init = False  # benchmark the step, not the chaining
        module = build_module(cfg).to(device)
        h, w = _train_size(cfg)
        from datamodules.pix2pixhd import SyntheticScenesDataset

        ds = SyntheticScenesDataset(num_samples=batch, image_size=(h, w), label_nc=int(cfg.dataset.label_nc))
        items = [ds[i] for i in range(batch)]
        data = {k: torch.stack([it[k] for it in items]).to(device) for k in ("label", "inst", "image")}
        opt_g, opt_d = [c["optimizer"] for c in module.configure_optimizers()]

        def step() -> None:
            module.gan_step(data, opt_g, opt_d)

    for _ in range(2):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    dt = (time.perf_counter() - t) / steps
    return {"model": model, "stage": stage, "size": size, "resolution": f"{h}x{w}", "batch": batch,
            "steps_per_s": 1.0 / dt, "peak_mb": _peak_mb(device), "device": device}


def _train_size(cfg) -> tuple[int, int]:
    from datamodules.transforms import training_size

    return training_size(tuple(cfg.dataset.image_size), float(cfg.stage.resolution_scale),
                         int(cfg.dataset.size_multiple))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="demo", choices=["demo", "paper"])
    p.add_argument("--stages", nargs="+", default=["global", "local"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", nargs=2, metavar=("MODEL", "STAGE"), help=argparse.SUPPRESS)
    p.add_argument("--skip-pool", action="store_true", help="skip the instance pooling benchmark")
    p.add_argument("--skip-lst", action="store_true", help="skip the LST stylisation frames/s benchmark")
    p.add_argument("--skip-edn", action="store_true", help="skip the EDN rendering/transfer/pose benchmarks")
    p.add_argument("--skip-speed", action="store_true",
                   help="skip the speed-ups over fp32 eager (scripts/bench_speed.py)")
    p.add_argument("--skip-profile", action="store_true",
                   help="skip the per-operator profile, fp32 and bf16 (scripts/profile_ops.py)")
    p.add_argument("--quick", action="store_true", help="speed-ups: smaller sizes, fewer repeats")
    p.add_argument("--compile", action="store_true", help="speed-ups: add torch.compile rows")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(bench_one(args.one[0], args.one[1], args.size, args.batch, args.steps, args.device)))
        return 0

    rows = []
    jobs = [("resnet18-baseline", s) for s in args.stages] + [("pix2pixhd", s) for s in args.stages]
    for model, stage in jobs:
        cmd = [sys.executable, __file__, "--one", model, stage, "--size", args.size, "--batch", str(args.batch),
               "--steps", str(args.steps), "--device", args.device]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT,
                             env=dict(os.environ, WANDB_MODE="disabled"))
        if out.returncode != 0:
            print(f"{model}/{stage} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("\n## training steps (D step + G step per batch; baseline = ResNet-18 train step, same input)\n")
    print("| model | stage | size | resolution | batch | steps/s | peak MB | device |")
    print("|---|---|---|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['stage']} | {r['size']} | {r['resolution']} | {r['batch']} | "
              f"{r['steps_per_s']:.2f} | {r['peak_mb']:.0f} | {r['device']} |")
    if not args.skip_pool:
        sys.path.insert(0, str(REPO_ROOT / "scripts"))
        from bench_instance_pool import format_table, run

        print("\n## instance-wise average pooling, 512x1024, ~100 instances, 3 channels\n")
        print(format_table(run(512, 1024, 100, 3, 5)))
    if not args.skip_lst:
        sys.path.insert(0, str(REPO_ROOT / "scripts"))
        import bench_lst

        print("\n## LST stylisation frames/s (batch 1, style code computed once, full VGG widths, random weights)\n")
        print(bench_lst.format_table(bench_lst.run(device=args.device)))
    if not args.skip_edn:
        sys.path.insert(0, str(REPO_ROOT / "scripts"))
        import bench_edn

        bench_edn.main(["--device", args.device])
    if not args.skip_speed:
        sys.path.insert(0, str(REPO_ROOT / "scripts"))
        import bench_speed

        bench_speed.run(quick=args.quick, device=args.device, use_compile=args.compile)
    if not args.skip_profile:
        sys.path.insert(0, str(REPO_ROOT / "scripts"))
        import profile_ops

        print("\n## per-operator profile (top operators by self CPU time; training iteration and each network)")
        print(profile_ops.run(size=args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
