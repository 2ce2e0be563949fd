"""task=crop_faces (model=x2face): raw videos -> the ``face_video`` layout X2Face trains on.

    python run.py task=crop_faces model=x2face task.input=<folder> task.output=<folder>/train

``task.input`` holds ``<identity>/<video file>`` (any FFmpeg format) or ``<identity>/<video>/<frames>``. ``task.input`` is that
parent folder (a video file, or a folder of frames, given instead stops at once with the form to use). Every frame:
MediaPipe face detection (bundled in ``mediapipe==0.10.14``; ``task.detector=full_range`` (default) finds faces down
to about 1/16 of the frame width, ``short_range`` only faces within ~2 m, about 1/5 of the width); when the whole frame
shows none, a second pass on ``task.tiles`` x ``task.tiles`` overlapping tiles (each half the frame for 3) finds faces
down to about 1/30 of the width. With several faces, ``task.face_index`` picks one by size (0 = the largest) and the
summary says how many were seen. The box is made square around its centre and expanded ``task.expand`` = 1.6 times,
cropped (parts outside the frame filled with black) and resized to ``task.size`` = 256. Frames without a face are
skipped; a video with none stops with an error naming it, its first frame and the smallest face size the detector
finds. Written as ``<output>/<identity>/<video>/<frame:06d>.png``.

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
from datamodules.video import FRAME_EXTENSIONS, FrameSource
from tasks.config import ConfigError
from tasks.progress import progress

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
Box = tuple[float, float, float, float]
#: a detector: RGB uint8 [H, W, 3] -> the faces' (x0, y0, x1, y1) boxes in pixels (a list; one box or None also work)
Detector = Callable[[np.ndarray], "list[Box] | Box | None"]
DETECTORS = {"short_range": 0, "full_range": 1}  # task.detector -> MediaPipe's model_selection
#: the smallest face (fraction of the frame width) each detector finds, measured on skimage's astronaut pasted at
#: several scales into a 512-px frame: short_range ~1/5 (95 px), full_range ~1/16 (32 px), + 3x3 tiles ~1/30 (16 px)
SMALLEST_FACE = {"short_range": 1 / 5, "full_range": 1 / 16}
TILE_OVERLAP = 1.5  # each tile's side = frame side / tiles x this
NMS_IOU = 0.3  # boxes of the tiled pass overlapping more than this are one face
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


def mediapipe_detector(min_confidence: float = 0.5, detector: str = "full_range", tiles: int = 3) -> Detector:
    """MediaPipe face detection: every face's box on the whole frame; when there is none and ``tiles`` > 1, on
    ``tiles`` x ``tiles`` overlapping tiles (small faces get more of the detector's input), duplicates merged."""
    if detector not in DETECTORS:
        raise ConfigError(f"task.detector={detector} is unknown; use one of {sorted(DETECTORS)}")
    try:
        import mediapipe as mp
    except ImportError as err:
        raise ModuleNotFoundError(
            "task=crop_faces needs MediaPipe's bundled face detector: pip install mediapipe==0.10.14 "
            "(newer releases ship no models)") from err
    det = mp.solutions.face_detection.FaceDetection(model_selection=DETECTORS[detector],
                                                    min_detection_confidence=min_confidence)

    def run(image: np.ndarray, dx: int = 0, dy: int = 0) -> list[tuple[float, Box]]:
        result = det.process(np.ascontiguousarray(image))
        h, w = image.shape[:2]
        out = []
        for d in result.detections or []:
            b = d.location_data.relative_bounding_box
            out.append((float(d.score[0]), (dx + b.xmin * w, dy + b.ymin * h, dx + (b.xmin + b.width) * w,
                                            dy + (b.ymin + b.height) * h)))
        return out

    def detect(frame: np.ndarray) -> list[Box]:
        found = run(frame)
        if not found and tiles > 1:
            h, w = frame.shape[:2]
            th, tw = min(h, int(h / tiles * TILE_OVERLAP)), min(w, int(w / tiles * TILE_OVERLAP))
            for i in range(tiles):
                for j in range(tiles):
                    y0, x0 = round(i * (h - th) / (tiles - 1)), round(j * (w - tw) / (tiles - 1))
                    found += run(frame[y0:y0 + th, x0:x0 + tw], x0, y0)
        return merge_boxes(found)

    return detect


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def merge_boxes(scored: list[tuple[float, Box]], iou: float = NMS_IOU) -> list[Box]:
    """Non-maximum suppression: the most confident box of each group overlapping more than ``iou``."""
    kept: list[Box] = []
    for _, box in sorted(scored, key=lambda sb: -sb[0]):
        if all(_iou(box, k) <= iou for k in kept):
            kept.append(box)
    return kept


def _as_boxes(found: list[Box] | Box | None) -> list[Box]:
    if found is None:
        return []
    if len(found) == 4 and all(isinstance(v, int | float | np.floating | np.integer) for v in found):
        return [tuple(float(v) for v in found)]  # one box
    return [tuple(float(v) for v in b) for b in found]


def pick_face(boxes: list[Box], face_index: int = 0) -> Box | None:
    """The rule for several faces: sorted by area, largest first; ``face_index`` picks one (None when there are
    fewer faces than that)."""
    ranked = sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
    return ranked[face_index] if face_index < len(ranked) else None


def crop_video(path: str, out_dir: str, detector: Detector, size: int = 256, expand: float = 1.6,
               pose_fn: PoseFn | None = None, face_index: int = 0, smallest: str = "") -> tuple[int, int]:
    """Crop every frame of one video into ``out_dir`` (with ``pose_fn``: and its head pose into ``pose.csv``);
    returns (frames written, the most faces seen in one frame)."""
    written, poses, most, first_frame, width = 0, [], 0, None, None
    source = FrameSource(path, key="task.input")
    for t, frame in enumerate(progress(source, f"crop_faces {os.path.basename(path)}", unit="frame")):
        if first_frame is None:
            first_frame = source.names[0] if source.is_folder else "frame 0"
            width = frame.shape[1]
        boxes = _as_boxes(detector(frame))
        most = max(most, len(boxes))
        box = pick_face(boxes, face_index)
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
        if most > face_index:  # faces were found, but the head pose fit failed everywhere
            raise ValueError(f"no frame of {path} gave a head pose (Face Mesh found no face where the detector did); "
                             "pass task.head_pose=false to crop without pose.csv, or remove it from task.input")
        which = (f"fewer than {face_index + 1} faces (task.face_index={face_index})" if most and face_index
                 else "no face")
        raise ValueError(f"{which} found in any frame of {path} (first: {first_frame}, {width} px wide): the "
                         f"detector finds faces down to about {smallest or 'a few dozen pixels'}; film closer, or "
                         "remove it from task.input")
    if pose_fn is not None:
        rows = "pitch,yaw,roll\n" + "".join(f"{p:.4f},{y:.4f},{r:.4f}\n" for p, y, r in poses)
        atomic_write_text(os.path.join(out_dir, "pose.csv"), rows)
    return written, most


def _root_for(path: str, levels: int) -> str:
    for _ in range(levels):
        path = os.path.dirname(os.path.abspath(path))
    return path


def find_videos(src: str) -> list[tuple[str, str, str]]:
    """(identity, video name, path) of every ``<identity>/<video file or folder of frames>`` under ``src``, or one
    error with the form to use (checked before any model loads)."""
    if os.path.isfile(src):
        up = 3 if src.lower().endswith(FRAME_EXTENSIONS) else 2  # <root>/<identity>/<video>/<frame> or .../<video>
        raise ConfigError(f"task.input={src} is a file; pass the folder that holds <identity>/<video>: "
                          f"task.input={_root_for(src, up)}")
    if not os.path.isdir(src):
        raise ConfigError(f"task.input={src} is not a folder; pass a folder of <identity>/<video file or frames>")
    videos = []
    for ident in sorted(os.listdir(src)):
        ipath = os.path.join(src, ident)
        if not os.path.isdir(ipath):
            continue
        for video in sorted(os.listdir(ipath)):
            vpath = os.path.join(ipath, video)
            name, ext = os.path.splitext(video)
            if os.path.isdir(vpath) or ext.lower() in VIDEO_EXTENSIONS:
                videos.append((ident, name, vpath))
    if not videos:
        own = [f.lower() for f in os.listdir(src)]
        hint = ""
        if any(f.endswith(FRAME_EXTENSIONS) for f in own):  # src is one video's frames
            hint = f"; it holds frames itself, so it is one video: pass task.input={_root_for(src, 2)}"
        elif any(f.endswith(VIDEO_EXTENSIONS) for f in own):  # src is one identity's videos
            hint = f"; it holds videos itself, so it is one identity: pass task.input={_root_for(src, 1)}"
        raise ConfigError(f"task.input={src} holds no <identity>/<video> ({', '.join(VIDEO_EXTENSIONS)} or a folder "
                          f"of frames){hint}")
    return videos


def crop_faces(cfg: DictConfig, detector: Detector | None = None, pose_fn: PoseFn | None = None) -> dict[str, int]:
    task = cfg.task
    src, dst = str(task.input), str(task.output)
    videos = find_videos(src)  # the layout is checked before MediaPipe loads
    face_index = int(task.get("face_index", 0))
    if face_index < 0:
        raise ConfigError(f"task.face_index={face_index} must be >= 0 (0 = the largest face)")
    kind = str(task.get("detector", "full_range"))
    tiles = int(task.get("tiles", 3))
    smallest = ""
    if kind in SMALLEST_FACE:
        smallest = f"1/{round(1 / SMALLEST_FACE[kind])} of the frame width with task.detector={kind}"
        smallest += " (about half that with the tiled pass)" if tiles > 1 else " (task.tiles=3 finds smaller ones)"
    log.info("crop_faces: %d video(s) in %s; loading MediaPipe's face detector (%s)", len(videos), src, kind)
    detector = detector or mediapipe_detector(float(task.min_confidence), kind, tiles)
    if bool(task.get("head_pose", True)) and pose_fn is None:
        from tasks.x2face.headpose import MeshHeadPose

        pose_fn = MeshHeadPose(video=True, min_confidence=float(task.min_confidence),
                               backend=str(task.get("pnp_backend", "auto")))
    elif not bool(task.get("head_pose", True)):
        pose_fn = None
    counts: dict[str, int] = {}
    several: dict[str, int] = {}
    for ident, name, vpath in videos:
        key = f"{ident}/{name}"
        counts[key], most = crop_video(vpath, os.path.join(dst, ident, name), detector, int(task.size),
                                       float(task.expand), pose_fn, face_index, smallest)
        if most > 1:
            several[key] = most
    print(f"\ncondsynth: cropped {sum(counts.values())} frames of {len(counts)} videos into {dst}")
    for key, most in several.items():
        print(f"condsynth: {key}: up to {most} faces in a frame; cropped face {face_index} by size (0 = the largest; "
              "task.face_index picks another)")
    return counts
