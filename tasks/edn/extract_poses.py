"""task=extract_poses: a video file or a frame folder -> one OpenPose JSON per frame (BODY_25 + face points),
with MediaPipe (the optional ``pose`` extra).

    python run.py task=extract_poses model=edn task.input=dance.mp4     # -> <run dir>/keypoints/frame000000_keypoints.json ...

A frame without a person gets a file with an empty ``people`` list (the datamodule skips it and counts it); a video
in which no frame has a person is an error.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from omegaconf import DictConfig
from tqdm import tqdm

from datamodules.edn.keypoints import write_openpose_json
from datamodules.edn.video import FrameSource
from tasks.edn.poses import PoseEstimator

log = logging.getLogger(__name__)


def extract_poses(cfg: DictConfig) -> dict[str, Any]:
    source = FrameSource(str(cfg.task.input), key="task.input")
    output = str(cfg.task.get("output") or os.path.join(str(cfg.paths.run_dir), "keypoints"))
    estimator = PoseEstimator(video=not bool(cfg.task.get("static_images", False)), face=bool(cfg.task.face),
                              min_visibility=float(cfg.task.min_visibility))
    found = n = 0
    seconds = 0.0
    try:
        with tqdm(total=len(source), unit="frame", desc="extract_poses") as bar:
            for name, frame in zip(source.names, source, strict=False):
                t0 = time.perf_counter()
                pose = estimator(frame)
                seconds += time.perf_counter() - t0
                write_openpose_json(os.path.join(output, f"{name}_keypoints.json"), [] if pose is None else [pose])
                found += pose is not None
                n += 1
                bar.update(1)
                bar.set_postfix(fps=f"{n / seconds:.1f}" if seconds else "-")
    finally:
        estimator.close()
    if found == 0:
        raise ValueError(f"no person was detected in any of the {n} frames of task.input={source.path}; pass a video "
                         "that shows the whole dancer (the JSON files in {output} have empty 'people' lists)"
                         .replace("{output}", output))
    fps = n / seconds if seconds else float("inf")
    print(f"\ncondsynth: {found} of {n} frames with a person, {fps:.2f} frames/s (pose estimation) -> {output}")
    return {"output": output, "frames": n, "with_person": found, "fps": fps}
