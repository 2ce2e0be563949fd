"""Peak memory and time of one pix2pixHD training iteration with each memory lever, each in its own process.

    python scripts/bench_memory.py                        # stage global, paper widths, 256x512 (a CPU-sized case)
    python scripts/bench_memory.py --size 512 1024        # the paper's stage-global resolution for 1024x512 data
    python scripts/bench_memory.py --levers none generator all --precision 32-true bf16-mixed

One iteration = the module's own training_step (G and D steps, VGG loss) on a random batch through a real
Trainer(max_steps=1). Peak memory is the child's peak RSS (``ru_maxrss``), so every row starts from nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def one(size: tuple[int, int], lever: str, precision: str) -> dict:
    sys.path.insert(0, str(REPO_ROOT))
    import pytorch_lightning as pl
    import torch

    from lightning_modules.factory import build_module
    from tasks.builders import build_datamodule
    from tasks.config import compose_config

    h, w = size
    cfg = compose_config(["size=paper", f"dataset.image_size=[{2 * h},{2 * w}]", "dataset.num_train=1",
                          "dataset.num_val=1", "dataset.num_test=1", "dataset.batch_size=1",
                          f"speed.checkpoint_activations={'false' if lever == 'none' else lever}",
                          "model.losses.perceptual.vgg.weights=null"], "/tmp/bench_memory")
    torch.manual_seed(0)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=2, limit_val_batches=0, logger=False,  # G + D: 1 batch
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         precision=precision)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": f"{h}x{w}", "lever": lever, "precision": precision, "s_per_iter": round(seconds, 2),
            "peak_rss_mb": round(peak_mb)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", nargs=2, type=int, default=[256, 512], metavar=("H", "W"),
                   help="stage global's training size (the data is twice that)")
    p.add_argument("--levers", nargs="+", default=["none", "generator", "all"])
    p.add_argument("--precision", nargs="+", default=["32-true"])
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        h, w = map(int, args.one[0].split("x"))
        print(json.dumps(one((h, w), args.one[1], args.one[2])))
        return 0
    rows = []
    for precision in args.precision:
        for lever in args.levers:
            cmd = [sys.executable, __file__, "--one", f"{args.size[0]}x{args.size[1]}", lever, precision]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                return out.returncode
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'size':>10} {'precision':>10} {'checkpointing':>14} {'s (1 iter)':>12} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['size']:>10} {r['precision']:>10} {r['lever']:>14} {r['s_per_iter']:>12} {r['peak_rss_mb']:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
