#!/usr/bin/env python
"""condsynth studio's figures: pix2pixHD edit-to-image latency and LST preview frames per second.

Each figure goes through the studio's real HTTP endpoints (FastAPI's TestClient: request, JSON, the worker queue,
generation, PNG encoding and the answer), on checkpoints with random weights built here (speed does not depend on
the weights):
  * pix2pixHD: ``--edits`` brush strokes (``POST /api/pix2pixhd/paint``) on a test scene; the median round trip and
    the median generation time. ``demo``: size=demo widths, stage global at 64x64 (what ``python run.py`` trains);
    ``paper``: the paper's widths (ngf 64, 4 downsamplings, 9 blocks; 35 classes like Cityscapes), stage global at
    512x256.
  * LST: ``--frames`` previews (``POST /api/lst/preview``; the style code and the content's features cached, alpha
    changing each frame so every frame is a new image) at shorter sides 256 and 512, the paper's r41 model with its
    full VGG widths; frames per second = 1000 / median time per frame.

    python scripts/bench_studio.py                       # both figures, CPU
    python scripts/bench_studio.py --edits 20 --frames 10 --only pix2pixhd
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

PIX2PIXHD_SETUPS = {
    # name: (overrides, generated size H x W)
    "demo": (["size=demo", "model.losses.perceptual.vgg.weights=null"], "64x64"),
    "paper 512x256": (["size=paper", "dataset.image_size=[512,1024]", "dataset.label_nc=35",
                       "model.losses.perceptual.vgg.weights=null"], "256x512"),
}


def save_checkpoint(module, path: Path) -> str:
    import torch

    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return str(path)


def pix2pixhd_checkpoint(folder: Path, overrides: list[str]) -> str:
    from lightning_modules.factory import build_module
    from tasks.config import compose_config

    cfg = compose_config(["trainer=cpu", *overrides], folder / "run")
    module = build_module(cfg, for_inference=True)
    module.feature_center_counts.fill_(module.feature_centers.shape[1])
    return save_checkpoint(module, folder / "pix2pixhd.ckpt")


def lst_checkpoint(folder: Path) -> str:
    from lightning_modules.factory import build_module
    from tasks.config import compose_config

    cfg = compose_config(["model=lst", "stage=transform", "trainer=cpu", "model.networks.encoder.weights=null",
                          "model.networks.loss_network.weights=null"], folder / "lst_run")
    return save_checkpoint(build_module(cfg, for_inference=True), folder / "lst.ckpt")


def client_for(ckpt: str, *overrides: str):
    from fastapi.testclient import TestClient

    from tasks.config import compose_config
    from tasks.studio.app import create_app
    from tasks.studio.serve import build_studio

    cfg = compose_config(["task=studio", f"task.ckpt_path=[{ckpt}]", *overrides], Path(ckpt).parent / "studio")
    studio = build_studio(cfg)  # a local Host and the studio's token, as the page sends them
    return TestClient(create_app(studio), base_url="http://127.0.0.1", headers={"X-Condsynth-Token": studio.token})


def bench_pix2pixhd(edits: int) -> list[str]:
    rows = []
    for name, (overrides, size) in PIX2PIXHD_SETUPS.items():
        with tempfile.TemporaryDirectory() as tmp:
            client = client_for(pix2pixhd_checkpoint(Path(tmp), overrides))
            scene = client.post("/api/pix2pixhd/scene", json={"index": 0}).json()
            w, h = scene["width"], scene["height"]
            trips, gens = [], []
            for i in range(edits + 1):  # the first is a warm-up
                y = (i * 7) % h
                body = {"class_id": i % 5, "points": [[w * 0.2, y], [w * 0.6, y]], "radius": max(1.0, w / 64)}
                start = time.perf_counter()
                res = client.post("/api/pix2pixhd/paint", json=body)
                trip = (time.perf_counter() - start) * 1000
                assert res.status_code == 200, res.text
                if i:
                    trips.append(trip)
                    gens.append(res.json()["generate_ms"])
            rows.append(f"| pix2pixHD {name} | {size} | {edits} | {statistics.median(trips):.1f} ms "
                        f"| {statistics.median(gens):.1f} ms |")
    return rows


def bench_lst(frames: int) -> list[str]:
    import numpy as np
    from PIL import Image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        client = client_for(lst_checkpoint(Path(tmp)), "task.lst.preview_sides=[256,512]", "task.lst.style_side=256")
        rng = np.random.default_rng(0)
        for what in ("content", "style"):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (512, 512, 3), np.uint8)).save(buf, format="PNG")
            assert client.post(f"/api/lst/{what}", files={"image": (f"{what}.png", buf.getvalue())}).status_code == 200
        for side in (256, 512):
            frame_ms, trips = [], []
            for i in range(frames + 1):
                start = time.perf_counter()
                res = client.post("/api/lst/preview", json={"alpha": 1.0 - 0.5 * (i % 2), "side": side})
                trip = (time.perf_counter() - start) * 1000
                assert res.status_code == 200, res.text
                if i:
                    frame_ms.append(res.json()["frame_ms"])
                    trips.append(trip)
            med = statistics.median(frame_ms)
            rows.append(f"| LST r41 preview | {side}x{side} | {frames} | {statistics.median(trips):.1f} ms "
                        f"| {med:.1f} ms = {1000 / med:.2f} fps |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20, help="timed brush strokes per pix2pixHD setup")
    parser.add_argument("--frames", type=int, default=10, help="timed LST previews per size")
    parser.add_argument("--only", choices=("pix2pixhd", "lst"), default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"condsynth studio figures: torch {torch.__version__}, {args.threads} CPU threads, "
          f"{os.cpu_count()} cores (median over the timed requests, one warm-up each)")
    print("| what | size (HxW) | requests | round trip | model time |")
    print("|---|---|---|---|---|")
    if args.only in (None, "pix2pixhd"):
        for row in bench_pix2pixhd(args.edits):
            print(row, flush=True)
    if args.only in (None, "lst"):
        for row in bench_lst(args.frames):
            print(row, flush=True)


if __name__ == "__main__":
    main()
