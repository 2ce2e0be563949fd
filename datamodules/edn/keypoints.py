"""Keypoints for Everybody Dance Now (Chan et al., ICCV 2019): OpenPose JSON I/O, format mappings, temporal
smoothing (the source -> target pose normalisation is in :mod:`datamodules.edn.posenorm`).

A frame's pose is a :class:`FramePose`: ``body`` [K, 3] (x, y, confidence in pixels; K = 25 for BODY_25, 18 for
COCO-18), and optionally ``face`` [F, 3] and ``hand_left`` / ``hand_right`` [21, 3]. A confidence of 0 means "not
detected". Everything here is plain NumPy (no torch, no Lightning): usable from notebooks and data loaders.

Several people or none in a frame (OpenPose writes every person it finds): the person with the largest summed
body confidence is used (``pick_person``); a frame with no person, or whose chosen person lacks the joints the
caller needs, is skipped and counted by the caller.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datamodules.atomic_writes import atomic_write_text

# --- formats ------------------------------------------------------------------------------------------
BODY_25_NAMES = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
                 "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
                 "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
COCO_18_NAMES = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip",
                 "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar")
FORMATS = {25: "BODY_25", 18: "COCO_18"}
#: per format: (nose, right ear, left ear, right ankle, left ankle), as the official get_pose_stats / aveface
HEAD_AND_FEET = {25: (0, 17, 18, 11, 14), 18: (0, 16, 17, 10, 13)}

# MediaPipe Pose (33 landmarks) -> BODY_25 (shared ENVIRONMENT.md); tuples are averaged; no small toes (-1).
MEDIAPIPE_33_TO_BODY_25: tuple[int | tuple[int, int], ...] = (
    0, (11, 12), 12, 14, 16, 11, 13, 15, (23, 24), 24, 26, 28, 23, 25, 27, 5, 2, 8, 7, 31, -1, 29, 32, -1, 30)
# COCO-18 -> BODY_25: same first 8 joints; MidHip = mean of the hips; no feet (-1)
COCO_18_TO_BODY_25: tuple[int | tuple[int, int], ...] = (
    0, 1, 2, 3, 4, 5, 6, 7, (8, 11), 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, -1, -1, -1, -1, -1, -1)

# MediaPipe Face Mesh (468 points; 478 with refine_landmarks' irises) -> OpenPose's 70 face keypoints (the iBUG-68
# layout plus two pupils). Points 0-67: the widely used Face Mesh <-> iBUG-68 correspondence (jaw 0-16 from the image's
# left, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67; the image-left eye is the subject's
# right, Face Mesh's RIGHT_EYE). 68/69, the right and left pupils: the iris centres 468/473 when the mesh has them,
# else the mean of that eye's six iBUG contour points.
MEDIAPIPE_468_TO_FACE_70: tuple[int, ...] = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,   # 0-16 jaw
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,                                       # 17-26 brows
    168, 197, 5, 4, 75, 97, 2, 326, 305,                                                 # 27-35 nose
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,                           # 36-47 eyes
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,                                 # 48-59 outer lips
    78, 82, 13, 312, 308, 317, 14, 87)                                                   # 60-67 inner lips
MEDIAPIPE_IRIS_CENTRES = (468, 473)   # right, left (refine_landmarks=True meshes only)
FACE_70_EYES = (tuple(range(36, 42)), tuple(range(42, 48)))   # right, left eye contours in the 70-point layout


class KeypointError(ValueError):
    """A keypoint file or sequence that cannot be used (named with the file, the value and the fix)."""


@dataclass
class FramePose:
    """One person's keypoints in one frame (pixels). ``body`` [K, 3]; ``face``/``hand_*`` [N, 3] or None."""

    body: np.ndarray
    face: np.ndarray | None = None
    hand_left: np.ndarray | None = None
    hand_right: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def format(self) -> str:
        return FORMATS.get(len(self.body), f"{len(self.body)} joints")

    def parts(self) -> dict[str, np.ndarray | None]:
        return {"body": self.body, "face": self.face, "hand_left": self.hand_left, "hand_right": self.hand_right}

    def transformed(self, scale: float, offset: tuple[float, float]) -> FramePose:
        """Every part's points ``p * scale + offset`` (confidences kept)."""
        def tr(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            out = a.astype(np.float64).copy()
            out[:, 0] = out[:, 0] * scale + offset[0]
            out[:, 1] = out[:, 1] * scale + offset[1]
            return out
        return FramePose(tr(self.body), tr(self.face), tr(self.hand_left), tr(self.hand_right), dict(self.extra))


# --- mappings -------------------------------------------------------------------------------------------
def _map(points: np.ndarray, table: tuple[int | tuple[int, int], ...], min_confidence: float = 0.0) -> np.ndarray:
    """Gather ``points`` [N, 3] into a new joint order; a pair is the mean of both (confidence: their minimum,
    0 when either is missing); -1 is a joint the source lacks (confidence 0)."""
    out = np.zeros((len(table), 3), dtype=np.float64)
    for j, src in enumerate(table):
        if isinstance(src, tuple):
            a, b = points[src[0]], points[src[1]]
            if a[2] > min_confidence and b[2] > min_confidence:
                out[j] = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, min(a[2], b[2])]
        elif src >= 0:
            out[j] = points[src]
    return out


def coco18_to_body25(points: np.ndarray) -> np.ndarray:
    """COCO-18 [18, 3] -> BODY_25 [25, 3] (MidHip = mean of the hips; feet missing)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (18, 3):
        raise KeypointError(f"COCO-18 keypoints must be [18, 3], got {points.shape}")
    return _map(points, COCO_18_TO_BODY_25)


def mediapipe33_to_body25(landmarks: np.ndarray, min_visibility: float = 0.0) -> np.ndarray:
    """MediaPipe Pose landmarks [33, 3] (x, y in pixels, visibility) -> BODY_25 [25, 3] (mapping of the shared
    ENVIRONMENT.md; Neck and MidHip are means of the shoulders / hips; no small toes). Landmarks whose visibility
    is not above ``min_visibility`` get confidence 0."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (33, 3):
        raise KeypointError(f"MediaPipe pose landmarks must be [33, 3], got {landmarks.shape}")
    pts = landmarks.copy()
    pts[pts[:, 2] <= min_visibility, 2] = 0.0
    return _map(pts, MEDIAPIPE_33_TO_BODY_25)


def mediapipe468_to_face70(mesh: np.ndarray) -> np.ndarray:
    """MediaPipe Face Mesh points [468 or 478, 3] (x, y in pixels, confidence) -> OpenPose face [70, 3]
    (:data:`MEDIAPIPE_468_TO_FACE_70`; pupils from the irises or the eye contours)."""
    mesh = np.asarray(mesh, dtype=np.float64)
    if mesh.ndim != 2 or mesh.shape[1] != 3 or len(mesh) not in (468, 478):
        raise KeypointError(f"Face Mesh points must be [468, 3] or [478, 3], got {mesh.shape}")
    out = np.zeros((70, 3))
    out[:68] = mesh[list(MEDIAPIPE_468_TO_FACE_70)]
    for k, (iris, eye) in enumerate(zip(MEDIAPIPE_IRIS_CENTRES, FACE_70_EYES, strict=True)):
        if len(mesh) == 478:
            out[68 + k] = mesh[iris]
        else:
            contour = out[list(eye)]
            out[68 + k] = [*contour[:, :2].mean(axis=0), contour[:, 2].min()]
    return out


def to_face70(face: np.ndarray | None) -> np.ndarray | None:
    """A face as OpenPose's 70 points: 70 as is, a Face Mesh (468/478) mapped; other counts as is."""
    if face is None or len(face) not in (468, 478):
        return face
    return mediapipe468_to_face70(face)


def to_body25(points: np.ndarray) -> np.ndarray:
    """BODY_25 as is; COCO-18 mapped."""
    return points if len(points) == 25 else coco18_to_body25(points)


# --- OpenPose JSON ----------------------------------------------------------------------------------------
_JSON_PARTS = {"body": "pose_keypoints_2d", "face": "face_keypoints_2d", "hand_left": "hand_left_keypoints_2d",
               "hand_right": "hand_right_keypoints_2d"}


def _as_points(values: Any, path: str, key: str) -> np.ndarray | None:
    """``values`` (a flat list of x, y, confidence numbers) as [N, 3], or a KeypointError naming the file and the
    first bad value: not a list, a string or other non-number, NaN or infinity (which JSON readers accept)."""
    if not values:
        return None
    if not isinstance(values, list):
        raise KeypointError(f"{path}: {key} is {type(values).__name__} {values!r:.40}, not a list of numbers "
                            "(x, y, confidence); re-run task=extract_poses for this frame")
    if len(values) % 3:
        raise KeypointError(f"{path}: {key} has {len(values)} numbers, not a multiple of 3 (x, y, confidence); "
                            "is it an OpenPose *_keypoints.json file?")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise KeypointError(f"{path}: {key}[{i}] is {v!r:.40} ({type(v).__name__}), not a number; write numbers "
                                "(x, y, confidence), or re-run task=extract_poses for this frame")
    points = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(points))
    if bad.size:
        raise KeypointError(f"{path}: {key}[{bad[0]}] is {points[bad[0]]} ({bad.size} value(s) not finite); write "
                            "finite numbers (a missing joint is 0, 0, 0), or re-run task=extract_poses for this frame")
    return points.reshape(-1, 3)


def pick_person(people: list[FramePose]) -> FramePose | None:
    """The rule for several people: the one with the largest summed body confidence; None for no people."""
    if not people:
        return None
    return max(people, key=lambda p: float(p.body[:, 2].sum()))


def read_openpose_json(path: str) -> list[FramePose]:
    """Every person of an OpenPose JSON file (``people[].pose_keypoints_2d`` BODY_25 or COCO-18, with face and
    hands when present)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise KeypointError(f"keypoint file {path} does not exist; run task=extract_poses on the video first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise KeypointError(f"{path} is not valid JSON ({err}); re-run task=extract_poses for this frame") from None
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise KeypointError(f"{path} has no 'people' list: not an OpenPose keypoint file")
    people = []
    for person in data["people"]:
        if not isinstance(person, dict):
            raise KeypointError(f"{path}: a 'people' entry is {type(person).__name__}, not an object with "
                                "pose_keypoints_2d; not an OpenPose keypoint file")
        body = _as_points(person.get("pose_keypoints_2d") or [], path, "pose_keypoints_2d")
        if body is None:
            continue
        if len(body) not in FORMATS:
            raise KeypointError(f"{path}: pose_keypoints_2d has {len(body)} joints; supported: 25 (BODY_25) or "
                                "18 (COCO-18)")
        parts = {name: _as_points(person.get(key) or [], path, key) for name, key in _JSON_PARTS.items()
                 if name != "body"}
        people.append(FramePose(body, **parts))
    return people


def read_frame_pose(path: str) -> FramePose | None:
    """The person :func:`pick_person` chooses in ``path`` (None when the frame has no one)."""
    return pick_person(read_openpose_json(path))


def openpose_dict(people: list[FramePose]) -> dict:
    out = []
    for p in people:
        entry = {"person_id": [-1]}
        for name, key in _JSON_PARTS.items():
            arr = getattr(p, name)
            entry[key] = [] if arr is None else [round(float(v), 4) for v in np.asarray(arr).reshape(-1)]
        out.append(entry)
    return {"version": 1.3, "people": out}


def write_openpose_json(path: str, people: list[FramePose]) -> str:
    """Write ``people`` in OpenPose's JSON format (atomically)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(openpose_dict(people)))
    return path


def keypoint_files(folder: str) -> list[str]:
    """The ``*.json`` files of ``folder`` in natural order (frame_2 before frame_10)."""
    from datamodules.video import natural_key

    if not os.path.isdir(folder):
        raise KeypointError(f"keypoint folder {folder} does not exist; run task=extract_poses (writes one "
                            "<frame>_keypoints.json per frame) or point dataset.keypoints at OpenPose's output")
    files = sorted((f for f in os.listdir(folder) if f.lower().endswith(".json")), key=natural_key)
    if not files:
        raise KeypointError(f"keypoint folder {folder} has no .json files; run task=extract_poses first")
    return [os.path.join(folder, f) for f in files]


# --- usable frames ------------------------------------------------------------------------------------------
def head_point(body: np.ndarray) -> np.ndarray | None:
    """The nose, else the mean of both ears, else one ear (official ``aveface``); None if none is detected."""
    nose, rear, lear, _, _ = HEAD_AND_FEET[len(body)]
    if body[nose, 2] > 0:
        return body[nose, :2]
    if body[rear, 2] > 0 and body[lear, 2] > 0:
        return (body[rear, :2] + body[lear, :2]) / 2
    for j in (rear, lear):
        if body[j, 2] > 0:
            return body[j, :2]
    return None


def pose_stats(body: np.ndarray) -> tuple[float, float] | None:
    """(height, ankle y) of a frame, or None when the head or an ankle is missing (official ``get_pose_stats``:
    height = head to mean ankle; the ankle y is the lower ankle's, i.e. the larger y, nearer the camera)."""
    _, _, _, rank, lank = HEAD_AND_FEET[len(body)]
    head = head_point(body)
    if head is None or body[rank, 2] <= 0 or body[lank, 2] <= 0:
        return None
    feet = (body[rank, :2] + body[lank, :2]) / 2
    return float(np.hypot(*(head - feet))), float(max(body[rank, 1], body[lank, 1]))


# --- temporal smoothing ---------------------------------------------------------------------------------------
def smooth_sequence(points: np.ndarray, window: int = 7, mode: str = "median",
                    min_confidence: float = 0.05) -> np.ndarray:
    """Smooth a keypoint track [T, N, 3] over a centred window of ``window`` frames (official: median over 7,
    ``getmedians_adapt``), per joint and ignoring points whose confidence is not above ``min_confidence``. A
    joint with no confident point in the window gets confidence 0. The window shrinks at the ends."""
    if mode not in ("median", "mean"):
        raise ValueError(f"smoothing mode={mode!r} unknown; use median or mean")
    if window < 1:
        raise ValueError(f"smoothing window={window} must be >= 1")
    pts = np.asarray(points, dtype=np.float64)
    t_len = pts.shape[0]
    out = np.zeros_like(pts)
    half = window // 2
    reduce = np.nanmedian if mode == "median" else np.nanmean
    valid = pts[..., 2] > min_confidence
    masked = np.where(valid[..., None], pts, np.nan)
    for t in range(t_len):
        chunk = masked[max(0, t - half): t + half + 1]
        ok = valid[max(0, t - half): t + half + 1].any(axis=0)
        with np.errstate(all="ignore"):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[t] = np.where(ok[:, None], reduce(chunk, axis=0), 0.0)
    return out


def smooth_poses(poses: list[FramePose], window: int = 7, mode: str = "median",
                 min_confidence: float = 0.05) -> list[FramePose]:
    """:func:`smooth_sequence` on each part of a list of poses (parts present in every frame)."""
    if window <= 1 or not poses:
        return list(poses)
    out = [FramePose(p.body.copy(), extra=dict(p.extra)) for p in poses]
    for name in ("body", "face", "hand_left", "hand_right"):
        arrays = [getattr(p, name) for p in poses]
        if any(a is None for a in arrays) or len({a.shape for a in arrays}) != 1:
            continue
        smoothed = smooth_sequence(np.stack(arrays), window, mode, min_confidence)
        for p, a in zip(out, smoothed, strict=True):
            setattr(p, name, a)
    return out
