"""A real pose estimator for Everybody Dance Now: MediaPipe Pose (``model_complexity=1``, bundled in mediapipe
0.10.14: no download at run time) mapped to BODY_25, and MediaPipe Face Mesh for the face points, mapped from its
468 points to OpenPose's 70 (:data:`datamodules.edn.keypoints.MEDIAPIPE_468_TO_FACE_70`) and written as
``face_keypoints_2d``, so the renderer's sparse face points and the face box use them. An optional extra:
``pip install -e .[pose]``."""

from __future__ import annotations

from typing import Any

import numpy as np

from datamodules.edn.keypoints import FramePose, mediapipe33_to_body25, mediapipe468_to_face70

POSE_EXTRA_HINT = ("pose extraction needs the optional 'pose' extra (MediaPipe 0.10.14, which bundles its models): "
                   "pip install -e .[pose]")


def load_mediapipe() -> Any:
    """``mediapipe`` or one clear error saying how to install it."""
    try:
        import mediapipe as mp
    except ImportError as err:
        raise ModuleNotFoundError(f"{POSE_EXTRA_HINT} ({err})") from None
    if not hasattr(mp, "solutions"):
        raise ModuleNotFoundError(f"mediapipe {getattr(mp, '__version__', '?')} has no bundled 'solutions' models; "
                                  + POSE_EXTRA_HINT)
    return mp


class PoseEstimator:
    """RGB uint8 frames [H, W, 3] -> :class:`FramePose` (BODY_25 in pixels; face mesh points) or None when no person
    is found. ``video=True`` tracks across frames (MediaPipe's video mode); ``min_visibility``: landmarks at or below
    it get confidence 0."""

    def __init__(self, video: bool = True, face: bool = True, min_visibility: float = 0.5,
                 min_detection_confidence: float = 0.5) -> None:
        mp = load_mediapipe()
        self.min_visibility = float(min_visibility)
        self.pose = mp.solutions.pose.Pose(static_image_mode=not video, model_complexity=1,
                                           min_detection_confidence=min_detection_confidence)
        self.face = mp.solutions.face_mesh.FaceMesh(static_image_mode=not video, max_num_faces=1) if face else None

    def __call__(self, frame: np.ndarray) -> FramePose | None:
        h, w = frame.shape[:2]
        frame = np.ascontiguousarray(frame)
        result = self.pose.process(frame)
        if result.pose_landmarks is None:
            return None
        lm = np.array([[p.x * w, p.y * h, p.visibility] for p in result.pose_landmarks.landmark])
        body = mediapipe33_to_body25(lm, self.min_visibility)
        face = None
        if self.face is not None:
            mesh = self.face.process(frame)
            if mesh.multi_face_landmarks:
                face = mediapipe468_to_face70(
                    np.array([[p.x * w, p.y * h, 1.0] for p in mesh.multi_face_landmarks[0].landmark]))
        return FramePose(body, face=face)

    def close(self) -> None:
        self.pose.close()
        if self.face is not None:
            self.face.close()
