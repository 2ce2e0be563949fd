#!/usr/bin/env python
"""Everybody Dance Now benchmarks (part of `make bench`):

* label rendering (BODY_25 + both hands + 70 face points) in ms/frame at 256x128, 512x256 and 1024x512, against a
  baseline measured in the same run: the same drawing with every dot and limb evaluated on the whole image;
* task=transfer's generator frames/s (temporal G, frame by frame on its own output, + face residual) at 256x128 and
  512x256, demo and paper widths, random weights;
* pose extraction frames/s (MediaPipe, model_complexity=1) when the `pose` extra is installed.

    python scripts/bench_edn.py [--device cuda] [--frames 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def _pose(h: int, w: int):
    from datamodules.edn.keypoints import FramePose
    from datamodules.edn.synthetic import dance_sequence

    pose = dance_sequence("target", 1, h, w, seed=0)[0]
    rng = np.random.default_rng(0)
    hand = lambda j: np.concatenate([pose.body[j, :2] + rng.normal(0, h / 40, (21, 2)), np.ones((21, 1))], 1)  # noqa
    face = np.concatenate([pose.body[0, :2] + rng.normal(0, h / 60, (70, 2)), np.ones((70, 1))], 1)
    return FramePose(pose.body, face=face, hand_left=hand(7), hand_right=hand(4))


def _naive_render(pose, h: int, w: int, stick: float) -> np.ndarray:
    """The baseline: the same shapes, each tested on every pixel of the image."""
    from datamodules.edn.render import BODY_25_LIMBS, BODY_25_RGB

    canvas = np.full((h, w, 3), 255.0, np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    b = pose.body
    for j, (x, y, c) in enumerate(b):
        if c > 0:
            canvas[(xx - x) ** 2 + (yy - y) ** 2 <= (2 * stick) ** 2] = BODY_25_RGB[j]
    for i, j in BODY_25_LIMBS:
        p, q = b[i, :2], b[j, :2]
        c, d = (p + q) / 2, q - p
        a = max(np.hypot(*d) / 2, 1e-6)
        u = d / (2 * a)
        along = (xx - c[0]) * u[0] + (yy - c[1]) * u[1]
        across = -(xx - c[0]) * u[1] + (yy - c[1]) * u[0]
        m = (along / a) ** 2 + (across / stick) ** 2 <= 1
        canvas[m] = 0.4 * canvas[m] + 0.6 * BODY_25_RGB[i]
    return canvas.astype(np.uint8)


def _time(fn, n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def bench_render(n: int = 20) -> list[dict]:
    from datamodules.edn.render import render_pose

    rows = []
    for h, w in ((128, 256), (256, 512), (512, 1024)):
        pose = _pose(h, w)
        ours = _time(lambda pose=pose, h=h, w=w: render_pose(pose, h, w), n)
        base = _time(lambda pose=pose, h=h, w=w: _naive_render(pose, h, w, 4 * h / 512), max(2, n // 4))
        rows.append({"resolution": f"{w}x{h}", "ms": ours * 1e3, "baseline_ms": base * 1e3})
    return rows


def bench_transfer(device: str, frames: int) -> list[dict]:
    import torch

    from lightning_modules.factory import build_module
    from tasks.config import compose_config

    rows = []
    for size in ("demo", "paper"):
        for h, w in ((128, 256), (256, 512)):
            cfg = compose_config(["model=edn", f"size={size}", "stage=face", "stage.generator=global",
                                  "stage.requires_init=false", "model.losses.face.perceptual.vgg.weights=null",
                                  f"dataset.image_size=[{h},{w}]"], "/tmp/condsynth-bench")
            module = build_module(cfg).to(device).eval()
            label = torch.randn(1, 3, h, w, device=device)
            s = module.face_size(h)
            box = torch.tensor([[h // 8, w // 2 - s // 2, s]], device=device)
            state = {"prev": None}

            def step(module=module, label=label, box=box, state=state) -> None:
                state["prev"] = module.next_frame(label, state["prev"], box)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()

            dt = _time(step, frames)
            rows.append({"size": size, "resolution": f"{w}x{h}", "fps": 1 / dt})
    return rows


def bench_poses(frames: int) -> str:
    try:
        from tasks.edn.poses import PoseEstimator

        estimator = PoseEstimator(video=True, face=True)
    except ModuleNotFoundError as err:
        return f"pose extraction: skipped ({str(err).split(' (')[0]})"
    from skimage import data

    img = data.astronaut()
    dt = _time(lambda: estimator(img), frames)
    body_only = PoseEstimator(video=True, face=False)
    dt_body = _time(lambda: body_only(img), frames)
    return (f"pose extraction (MediaPipe Pose model_complexity=1, 512x512 astronaut): {1 / dt_body:.1f} frames/s "
            f"body only, {1 / dt:.1f} frames/s with Face Mesh")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=3)
    args = p.parse_args(argv)
    print("\n## EDN label rendering (BODY_25 + hands + face), ms/frame; baseline = whole-image masks\n")
    print("| resolution | ms/frame | baseline ms/frame |\n|---|---:|---:|")
    for r in bench_render():
        print(f"| {r['resolution']} | {r['ms']:.2f} | {r['baseline_ms']:.2f} |")
    print("\n## EDN transfer: temporal G + face residual, frames/s (random weights)\n")
    print("| widths | resolution | frames/s | device |\n|---|---|---:|---|")
    for r in bench_transfer(args.device, args.frames):
        print(f"| {r['size']} | {r['resolution']} | {r['fps']:.2f} | {args.device} |")
    print("\n" + bench_poses(max(args.frames, 5)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
