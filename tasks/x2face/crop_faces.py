"""task=crop_faces (model=x2face): raw videos -> the ``face_video`` layout X2Face trains on.

    python run.py task=crop_faces model=x2face task.input=<folder> task.output=<folder>/train

``task.input`` holds ``<identity>/<video file>`` (any FFmpeg format) or ``<identity>/<video>/<frames>``. Every frame:
MediaPipe face detection (the model bundled in ``mediapipe==0.10.14``, ``model_selection=0``: faces within ~2 m),
the most confident face's box made square around its centre and expanded ``task.expand`` = 1.6 times, cropped (parts
outside the frame filled with black) and resized to ``task.size`` = 256. Frames without a face are skipped; a video
with none stops with an error naming it. Written as ``<output>/<identity>/<video>/<frame:06d>.png``.

With ``task.head_pose=true`` (default) each video also gets ``pose.csv`` (``pitch,yaw,roll`` in degrees, one row per
written frame) from MediaPipe Face Mesh on the full frame and a PnP fit to a fixed 3-D face
(:mod:`tasks.x2face.headpose`), so that stage ``pose_code`` can learn its maps on real videos; frames where the mesh
finds no face are skipped like frames without a detection.

MediaPipe is optional (``pip install mediapipe==0.10.14``; see ENVIRONMENT notes: it pins protobuf<5).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from datamodules.atomic_writes import atomic_path, atomic_write_text
from datamodules.video import FrameSource
from tasks.config import ConfigError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
#: a detector: RGB uint8 [H, W, 3] -> (x0, y0, x1, y1) in pixels of the most confident face, or None
Detector = Callable[[np.ndarray], "tuple[float, float, float, float] | None"]
#: a head-pose estimator: RGB uint8 [H, W, 3] -> (pitch, yaw, roll) in degrees, or None
PoseFn = Callable[[np.ndarray], "tuple[float, float, float] | None"]


def square_box(box: tuple[float, float, float, float], expand: float = 1.6) -> tuple[int, int, int, int]:
    """The square (x0, y0, x1, y1), side = ``expand`` x the box's longer side, centred on the box; may extend past
    the frame (the crop pads)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * float(expand)
    half = side / 2
    left, top = int(round(cx - half)), int(round(cy - half))
    s = max(1, int(round(side)))
    return left, top, left + s, top + s


def crop_square(frame: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """``frame[top:bottom, left:right]`` with the parts outside the frame black, resized to ``size`` x ``size``."""
    h, w = frame.shape[:2]
    left, top, right, bottom = box
    out = np.zeros((bottom - top, right - left, 3), dtype=np.uint8)
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(right, w), min(bottom, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = frame[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(out).resize((size, size), Image.BILINEAR))


def mediapipe_detector(min_confidence: float = 0.5) -> Detector:
    try:
        import mediapipe as mp
    except ImportError as err:
        raise ModuleNotFoundError(
            "task=crop_faces needs MediaPipe's bundled face detector: pip install mediapipe==0.10.14 "
            "(newer releases ship no models)") from err
    det = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_confidence)

    def detect(frame: np.ndarray) -> tuple[float, float, float, float] | None:
        result = det.process(frame)
        if not result.detections:
            return None
        best = max(result.detections, key=lambda d: d.score[0])
        b = best.location_data.relative_bounding_box
        h, w = frame.shape[:2]
        return b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h

    return detect


def crop_video(path: str, out_dir: str, detector: Detector, size: int = 256, expand: float = 1.6,
               pose_fn: PoseFn | None = None) -> int:
    """Crop every frame of one video into ``out_dir`` (with ``pose_fn``: and its head pose into ``pose.csv``);
    returns the number of frames written."""
    written, poses = 0, []
    for t, frame in enumerate(FrameSource(path, key="task.input")):
        box = detector(frame)
        if box is None:
            continue
        if pose_fn is not None:
            pose = pose_fn(frame)
            if pose is None:
                continue
            poses.append(pose)
        crop = crop_square(frame, square_box(box, expand), size)
        os.makedirs(out_dir, exist_ok=True)
        with atomic_path(os.path.join(out_dir, f"{t:06d}.png"), keep_extension=True) as tmp:
            Image.fromarray(crop).save(tmp)
        written += 1
    if written == 0:
        raise ValueError(f"no face found in any frame of {path}: check that the video shows a face (frontal, "
                         f"within ~2 m of the camera) or remove it from task.input")
    if pose_fn is not None:
        rows = "pitch,yaw,roll\n" + "".join(f"{p:.4f},{y:.4f},{r:.4f}\n" for p, y, r in poses)
        atomic_write_text(os.path.join(out_dir, "pose.csv"), rows)
    return written


def crop_faces(cfg: DictConfig, detector: Detector | None = None, pose_fn: PoseFn | None = None) -> dict[str, int]:
    task = cfg.task
    src, dst = str(task.input), str(task.output)
    if not os.path.isdir(src):
        raise ConfigError(f"task.input={src} is not a folder; pass a folder of <identity>/<video file or frames>")
    detector = detector or mediapipe_detector(float(task.min_confidence))
    if bool(task.get("head_pose", True)) and pose_fn is None:
        from tasks.x2face.headpose import MeshHeadPose

        pose_fn = MeshHeadPose(video=True, min_confidence=float(task.min_confidence),
                               backend=str(task.get("pnp_backend", "auto")))
    elif not bool(task.get("head_pose", True)):
        pose_fn = None
    counts: dict[str, int] = {}
    for ident in sorted(os.listdir(src)):
        ipath = os.path.join(src, ident)
        if not os.path.isdir(ipath):
            continue
        for video in sorted(os.listdir(ipath)):
            vpath = os.path.join(ipath, video)
            name, ext = os.path.splitext(video)
            if not (os.path.isdir(vpath) or ext.lower() in VIDEO_EXTENSIONS):
                continue
            counts[f"{ident}/{name}"] = crop_video(vpath, os.path.join(dst, ident, name), detector,
                                                   int(task.size), float(task.expand), pose_fn)
    if not counts:
        raise ValueError(f"task.input={src} holds no <identity>/<video> ({', '.join(VIDEO_EXTENSIONS)} or a folder "
                         f"of frames)")
    print(f"\ncondsynth: cropped {sum(counts.values())} frames of {len(counts)} videos into {dst}")
    return counts
