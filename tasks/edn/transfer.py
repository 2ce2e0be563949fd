"""task=transfer: Everybody Dance Now's motion transfer in one command (paper §3, Fig. 2 "transfer"):

    source video (or its OpenPose JSON) -> poses -> temporal smoothing -> normalisation to the target ->
    pose labels -> temporal generator, frame by frame on its own outputs -> face residual -> mp4

    python run.py task=transfer model=edn stage=face task.ckpt_path=<face run>/checkpoints/last.ckpt \
        task.source=source.mp4                                   # poses extracted with MediaPipe (pip install -e .[pose])
    python run.py task=transfer model=edn stage=face task.ckpt_path=... task.source=source.mp4 \
        task.source_keypoints=source_json/                       # OpenPose JSON, no extraction
    python run.py task=transfer model=edn task.ckpt_path=<global run>/checkpoints/last.ckpt task.source=synthetic

Writes ``<run dir>/predictions/<source>_transfer.mp4`` and ``<source>_side_by_side.mp4`` (source | normalised pose
| output); a progress bar shows frames done and frames per second.

* Target statistics (for the normalisation): ``task.target_keypoints`` (+ ``task.target_size``), else the
  dataset's: the target video's JSON for ``dataset=dance_video``, the synthetic target dancer for the default.
* Output size: the stage's training size (``dataset.image_size`` x ``stage.resolution_scale``).
* Source frames without a person repeat the previous frame's pose (counted); leading ones take the first pose.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from datamodules.edn.datamodule import scale_pose, to_signed_tensor
from datamodules.edn.keypoints import (
    FramePose,
    KeypointError,
    keypoint_files,
    pose_stats,
    read_frame_pose,
    smooth_poses,
)
from datamodules.edn.posenorm import fit_normalisation
from datamodules.edn.render import face_box, render_pose
from datamodules.edn.synthetic import SUBJECTS, dance_sequence, render_photo
from datamodules.edn.video import FrameSource
from datamodules.transforms import training_size
from datamodules.video import VideoWriter, has_audio
from tasks.inference import inference_device, load_for_inference, require_checkpoint
from tasks.progress import progress

log = logging.getLogger(__name__)


def output_size(cfg: DictConfig) -> tuple[int, int]:
    return training_size(tuple(cfg.dataset.image_size), float(cfg.stage.resolution_scale),
                         int(cfg.dataset.get("size_multiple", 1)))


def _read_poses(folder: str, expected: int | None, what: str) -> list[FramePose | None]:
    files = keypoint_files(folder)
    if expected is not None and len(files) != expected:
        raise KeypointError(f"{what}={folder} has {len(files)} JSON files but the video has {expected} frames; they "
                            "must match one to one (re-run task=extract_poses on this video)")
    return [read_frame_pose(f) for f in files]


class SyntheticSource:
    """The synthetic source dancer (other proportions, farther away) as a source video."""

    def __init__(self, n: int, size: tuple[int, int], seed: int) -> None:
        self.poses = dance_sequence("source", n, *size, seed=seed + 1000)
        self.size, self.name, self.fps = size, "synthetic_source", 25

    def __iter__(self):
        for p in self.poses:
            yield render_photo(SUBJECTS["source"], p, *self.size)


def source_poses(cfg: DictConfig, out: tuple[int, int]) -> tuple[Any, list[FramePose | None], tuple[int, int]]:
    """(frames iterable or None, poses, frame size [H, W]) of the source."""
    src = cfg.task.get("source")
    kp = cfg.task.get("source_keypoints")
    if src == "synthetic":
        s = SyntheticSource(int(cfg.task.num_frames or 48), out, int(cfg.seed))
        return s, list(s.poses), out
    if src is None and kp is None:
        raise ValueError("task=transfer needs task.source=<source video or frame folder> (or synthetic), or "
                         "task.source_keypoints=<OpenPose JSON folder> with task.source_size=[H,W]")
    frames = FrameSource(str(src), key="task.source") if src is not None else None
    if frames is not None:
        first = next(iter(frames))
        size = first.shape[:2]
    else:
        if cfg.task.get("source_size") is None:
            raise ValueError("task.source_keypoints without task.source needs task.source_size=[H,W] (the source "
                             "video's frame size)")
        size = tuple(int(v) for v in cfg.task.source_size)
    if kp is not None:
        poses = _read_poses(str(kp), len(frames) if frames is not None else None, "task.source_keypoints")
    else:
        from tasks.edn.poses import PoseEstimator

        estimator = PoseEstimator(video=True, face=True)
        try:
            poses = [estimator(f) for f in progress(frames, "source poses", total=len(frames), unit="frame")]
        finally:
            estimator.close()
    if not any(p is not None for p in poses):
        raise KeypointError(f"no person was found in any frame of the source ({src or kp}); pass a video that shows "
                            "the whole dancer")
    return frames, poses, size


def target_poses(cfg: DictConfig, out: tuple[int, int]) -> tuple[list[FramePose | None], tuple[int, int]]:
    """The target's poses (for its statistics) and its frame size."""
    if cfg.task.get("target_keypoints") is not None:
        if cfg.task.get("target_size") is None:
            raise ValueError("task.target_keypoints needs task.target_size=[H,W] (the target video's frame size)")
        return _read_poses(str(cfg.task.target_keypoints), None, "task.target_keypoints"), \
            tuple(int(v) for v in cfg.task.target_size)
    if cfg.dataset.dataset == "dance_video":
        frames = FrameSource(str(cfg.dataset.frames), key="dataset.frames")
        size = next(iter(frames)).shape[:2]
        return _read_poses(str(cfg.dataset.keypoints), len(frames), "dataset.keypoints"), size
    return dance_sequence("target", 400, *out, seed=int(cfg.seed)), out


def fill_missing(poses: list[FramePose | None]) -> tuple[list[FramePose], int]:
    """Frames without a person take the previous pose (leading ones the first); returns (poses, how many filled)."""
    first = next(p for p in poses if p is not None)
    out, last, filled = [], first, 0
    for p in poses:
        if p is None:
            filled += 1
            p = last
        out.append(p)
        last = p
    return out, filled


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frame.shape[:2] == tuple(size):
        return frame
    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BICUBIC))


def _uint8(x: torch.Tensor) -> np.ndarray:
    return ((x[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def transfer(cfg: DictConfig) -> dict[str, Any]:
    ckpt = require_checkpoint(cfg)
    out = output_size(cfg)
    frames, poses, src_size = source_poses(cfg, out)
    poses, filled = fill_missing(poses)
    if filled:
        log.warning("transfer: %d source frames have no person and repeat the previous pose", filled)
    poses = smooth_poses(poses, int(cfg.task.smooth_window), str(cfg.task.smooth_mode),
                         float(cfg.task.min_confidence))
    tgt, tgt_size = target_poses(cfg, out)
    if bool(cfg.task.normalize):
        norm = fit_normalisation(poses, tgt, src_size[1], tgt_size[1], float(cfg.task.far_fraction),
                                 float(cfg.task.window_fraction), float(cfg.task.reset_fraction), str(cfg.task.anchor))
        last_ankle = None
        normalised = []
        for p in poses:
            q, _, _ = norm.apply(p, last_ankle)  # a frame without ankles keeps the previous frame's (official)
            normalised.append(q)
            stats = pose_stats(p.body)
            last_ankle = stats[1] if stats is not None else last_ankle
        poses = normalised
        log.info("normalisation: scale far %.3f, close %.3f", norm.scale_far, norm.scale_close)
        base = tgt_size
    else:
        base = src_size
    poses = [scale_pose(p, out[1] / base[1], out[0] / base[0]) for p in poses]

    device = inference_device(cfg)
    module = load_for_inference(cfg, ckpt).to(device)
    name = getattr(frames, "name", None) or os.path.splitext(os.path.basename(os.path.normpath(
        str(cfg.task.get("source") or cfg.task.get("source_keypoints")))))[0]
    folder = str(cfg.task.get("output_dir") or cfg.paths.prediction_dir)
    fps = cfg.task.get("fps") or getattr(frames, "fps", None) or 25
    # the output carries the source dance's audio (copied, or re-encoded when the container needs it)
    audio = frames.path if isinstance(frames, FrameSource) and bool(cfg.task.get("audio", True)) and \
        has_audio(frames.path) else None
    video = VideoWriter(os.path.join(folder, f"{name}_transfer.mp4"), fps, audio=audio)
    side = VideoWriter(os.path.join(folder, f"{name}_side_by_side.mp4"), fps)
    source_iter = iter(frames) if frames is not None else None
    previous = None
    model_s, n = 0.0, 0
    try:
        for pose in progress(poses, "transfer", unit="frame"):
            label_img = render_pose(pose, *out, face=bool(cfg.dataset.get("face", True)),
                                    hands=bool(cfg.dataset.get("hands", True)))
            label = to_signed_tensor(label_img)[None].to(device)
            box = torch.tensor([face_box(pose, *out)], device=device)
            t0 = time.perf_counter()
            previous = frame = module.next_frame(label, previous, box)  # the refined frame conditions the next
            if device.type == "cuda":
                torch.cuda.synchronize()
            model_s += time.perf_counter() - t0
            result = _uint8(frame)
            video.write(result)
            src = _resize(next(source_iter), out) if source_iter is not None else np.full_like(result, 255)
            side.write(np.concatenate([src, label_img, result], axis=1))
            n += 1
        paths = video.close(), side.close()
    except BaseException:
        video.abort()
        side.abort()
        raise
    fps_model = n / model_s if model_s else float("inf")
    print(f"\ncondsynth: {n} frames {out[0]}x{out[1]} at {fps_model:.2f} frames/s (generator + face, "
          f"{device.type}); {filled} frames without a person -> {paths[0]} ({video.audio_note}), {paths[1]}")
    return {"output": paths[0], "side_by_side": paths[1], "frames": n, "fps": fps_model, "filled": filled,
            "size": out}
