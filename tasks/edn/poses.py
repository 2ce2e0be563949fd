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
    is found. ``min_visibility``: landmarks at or below it get confidence 0.

    ``video=False``: every frame is detected on its own (MediaPipe's still-image mode: person detector + landmarks).
    ``video=True``: landmarks tracked from frame to frame (smoother), but a tracked pose is only kept when a
    still-image detection on the same frame also finds a person (every ``verify_every`` frames; 0 = never). MediaPipe's
    tracker carries the last pose into frames where nobody is: on the astronaut followed by a coffee cup its phantom
    skeletons had visibilities of 0.75-0.83 and a person mask over half the frame, higher than the real person's, so
    neither score can tell them apart; the detector can. A pose that fails the check is dropped and the tracker reset,
    so the next frame is detected afresh."""

    def __init__(self, video: bool = True, face: bool = True, min_visibility: float = 0.5,
                 min_detection_confidence: float = 0.5, verify_every: int = 1) -> None:
        mp = load_mediapipe()
        self.min_visibility = float(min_visibility)
        self.verify_every = int(verify_every) if video else 0
        self.pose = mp.solutions.pose.Pose(static_image_mode=not video, model_complexity=1,
                                           min_detection_confidence=min_detection_confidence)
        self.check = (mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                             min_detection_confidence=min_detection_confidence)
                      if self.verify_every > 0 else None)
        self.face = mp.solutions.face_mesh.FaceMesh(static_image_mode=not video, max_num_faces=1) if face else None
        self.frames = 0
        self.dropped = 0  # tracked poses the detector did not confirm

    def __call__(self, frame: np.ndarray) -> FramePose | None:
        h, w = frame.shape[:2]
        frame = np.ascontiguousarray(frame)
        result = self.pose.process(frame)
        index, self.frames = self.frames, self.frames + 1
        if result.pose_landmarks is None:
            return None
        if self.check is not None and index % self.verify_every == 0 and \
                self.check.process(frame).pose_landmarks is None:
            self.dropped += 1
            self.pose.reset()  # the tracked pose is not supported by the frame: detect afresh next time
            if self.face is not None:
                self.face.reset()
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
        if self.check is not None:
            self.check.close()
        if self.face is not None:
            self.face.close()
