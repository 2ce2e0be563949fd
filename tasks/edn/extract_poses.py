"""task=extract_poses: a video file or a frame folder -> one OpenPose JSON per frame (BODY_25 + face points),
with MediaPipe (the optional ``pose`` extra).

    python run.py task=extract_poses model=edn task.input=dance.mp4     # -> <run dir>/keypoints/frame000000_keypoints.json ...

A frame without a person gets a file with an empty ``people`` list (the datamodule skips it and counts it) and is
named in the summary; a video in which no frame has a person is an error.

``task.static_images``: null (default) = each frame of a frame folder detected on its own (a folder's frames need not
be consecutive), a video file tracked from frame to frame with every tracked pose confirmed by a still-image detection
(``task.verify_every``; see :class:`tasks.edn.poses.PoseEstimator`); true / false force one mode. MediaPipe Pose finds
one person per frame (the most prominent one).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from omegaconf import DictConfig

from datamodules.edn.keypoints import write_openpose_json
from datamodules.edn.video import FrameSource
from tasks.edn.poses import PoseEstimator
from tasks.progress import progress

log = logging.getLogger(__name__)

MAX_NAMED = 20  # frames without a person named in the summary (the rest counted)


def extract_poses(cfg: DictConfig) -> dict[str, Any]:
    source = FrameSource(str(cfg.task.input), key="task.input")
    output = str(cfg.task.get("output") or os.path.join(str(cfg.paths.run_dir), "keypoints"))
    static = cfg.task.get("static_images")
    still = source.is_folder if static is None else bool(static)
    estimator = PoseEstimator(video=not still, face=bool(cfg.task.face), min_visibility=float(cfg.task.min_visibility),
                              verify_every=int(cfg.task.get("verify_every", 1)))
    log.info("extract_poses: %s (%s)", "still images, each frame detected on its own" if still else
             "video tracking, each tracked pose confirmed by a detection", "task.static_images")
    found = n = 0
    missing: list[str] = []
    seconds = 0.0
    try:
        for name, frame in zip(source.names, progress(source, "extract_poses", total=len(source), unit="frame"),
                               strict=False):
            t0 = time.perf_counter()
            pose = estimator(frame)
            seconds += time.perf_counter() - t0
            write_openpose_json(os.path.join(output, f"{name}_keypoints.json"), [] if pose is None else [pose])
            found += pose is not None
            if pose is None:
                missing.append(name)
            n += 1
    finally:
        estimator.close()
    if found == 0:
        raise ValueError(f"no person was detected in any of the {n} frames of task.input={source.path}; pass a video "
                         "that shows the whole dancer (the JSON files in {output} have empty 'people' lists)"
                         .replace("{output}", output))
    fps = n / seconds if seconds else float("inf")
    print(f"\ncondsynth: {found} of {n} frames with a person, {fps:.2f} frames/s (pose estimation) -> {output}")
    if missing:
        shown = ", ".join(missing[:MAX_NAMED]) + (f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED
                                                  else "")
        print(f"condsynth: no person in {len(missing)} frame(s): {shown} (their JSON files have empty 'people' lists)")
    if estimator.dropped:
        print(f"condsynth: {estimator.dropped} tracked pose(s) dropped: the detector found nobody in those frames")
    return {"output": output, "frames": n, "with_person": found, "fps": fps, "without_person": missing,
            "dropped_tracked": estimator.dropped}
