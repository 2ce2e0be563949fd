"""Head pose (pitch, yaw, roll) of a real face for X2Face's pose codes (paper §4.1 learns the pose maps from
ground-truth poses): seven rigid MediaPipe Face Mesh landmarks fitted to a fixed 3-D face model by PnP.

* Model points (``FACE_MODEL_3D``, centimetres, from MediaPipe's own canonical face): three points of the nose and
  the four eye corners, in a head frame whose axes equal the camera's when
  the face looks straight into it (x to the image's right, y down, z away from the camera; the nose tip at the
  origin). ``MESH_INDICES`` names the Face Mesh landmarks at those points (the subject's right eye is on the image's
  left: Face Mesh's RIGHT_EYE).
* Camera: a pinhole with focal length = the image width and the principal point at the centre, no distortion (the
  usual assumption without calibration).
* Solver (started from a frontal pose, :func:`initial_translation`): OpenCV's ``solvePnP`` (iterative) when ``cv2``
  imports (it comes with the ``pose`` extra's mediapipe),
  else :func:`solve_pnp_numpy`, a small Levenberg-Marquardt on the reprojection error in NumPy.
* Angles: the camera-from-head rotation is ``R = Rz(roll) Rx(pitch) Ry(yaw)``, the convention of the synthetic faces
  (``datamodules.x2face.synthetic``), in degrees.
"""

from __future__ import annotations

import numpy as np

#: the model points in centimetres: MediaPipe's canonical face model (``canonical_face_model.obj``; landmark i is its
#: vertex i), moved to the nose tip and turned to x right, y down, z away from the camera. Rigid points only: the
#: nose and the eye corners (the mouth and the chin move when the face talks or smiles)
FACE_MODEL_3D = np.array([
    [0.0, 0.0, 0.0],                   # 1: nose tip
    [0.0, 0.962159, 1.417337],         # 2: under the nose
    [0.0, -4.397892, 2.239589],        # 168: nose bridge between the eyes
    [-4.445859, -3.790856, 4.302182],  # 33: the subject's right eye, outer corner (image left)
    [-1.856432, -3.712110, 3.717700],  # 133: right eye, inner corner
    [1.856432, -3.712110, 3.717700],   # 362: left eye, inner corner
    [4.445859, -3.790856, 4.302182],   # 263: left eye, outer corner
])
#: Face Mesh landmarks at the model points, in the same order
MESH_INDICES = (1, 2, 168, 33, 133, 362, 263)


def camera_matrix(height: int, width: int) -> np.ndarray:
    """Pinhole intrinsics: focal length = width, principal point = the image centre."""
    return np.array([[width, 0.0, width / 2], [0.0, width, height / 2], [0.0, 0.0, 1.0]])


def rotation_from_euler(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """``Rz(roll) @ Rx(pitch) @ Ry(yaw)`` (degrees)."""
    p, y, r = np.radians([pitch, yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def euler_from_rotation(rot: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees of ``R = Rz(roll) Rx(pitch) Ry(yaw)``: the third row of R is
    ``(-cos p sin y, sin p, cos p cos y)``; ``R[0, 1] = -sin r cos p`` and ``R[1, 1] = cos r cos p``."""
    pitch = np.arcsin(np.clip(rot[2, 1], -1.0, 1.0))
    yaw = np.arctan2(-rot[2, 0], rot[2, 2])
    roll = np.arctan2(-rot[0, 1], rot[1, 1])
    return tuple(float(v) for v in np.degrees([pitch, yaw, roll]))


def _rodrigues(w: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(w))
    if theta < 1e-12:
        return np.eye(3)
    k = w / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def project(points: np.ndarray, rot: np.ndarray, t: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pixels [N, 2] of model points [N, 3] under ``x_cam = R x + t`` and intrinsics ``k``."""
    cam = points @ rot.T + t
    uv = cam @ k.T
    return uv[:, :2] / uv[:, 2:3]


def initial_translation(points: np.ndarray, pixels: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The translation that puts the unrotated model where the landmarks are, at the depth where its spread matches
    theirs: the start of both solvers (a frontal start keeps them off the mirrored, upside-down solution that
    near-planar points allow)."""
    spread_model = np.linalg.norm(points[:, :2] - points[:, :2].mean(0), axis=1).mean()
    spread_image = np.linalg.norm(pixels - pixels.mean(0), axis=1).mean()
    z = k[0, 0] * spread_model / max(spread_image, 1e-9)
    centre = (pixels.mean(0) - k[:2, 2]) * z / k[0, 0]
    return np.array([centre[0], centre[1], z])


def solve_pnp_numpy(points: np.ndarray, pixels: np.ndarray, k: np.ndarray, iterations: int = 100,
                    tolerance: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) minimising the squared reprojection error by Levenberg-Marquardt on (rotation vector, t), numeric
    Jacobian. Start: no rotation, the model at the depth where its size matches the landmarks' spread."""
    pixels = np.asarray(pixels, np.float64)
    x = np.concatenate([np.zeros(3), initial_translation(points, pixels, k)])

    def residual(v: np.ndarray) -> np.ndarray:
        return (project(points, _rodrigues(v[:3]), v[3:], k) - pixels).ravel()

    lam, r = 1e-3, residual(x)
    for _ in range(iterations):
        jac = np.empty((r.size, 6))
        for i in range(6):
            step = 1e-6 * max(1.0, abs(x[i]))
            dx = np.zeros(6)
            dx[i] = step
            jac[:, i] = (residual(x + dx) - r) / step
        a, g = jac.T @ jac, jac.T @ r
        new = x - np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), g)
        r_new = residual(new)
        if r_new @ r_new < r @ r:
            done = r @ r - r_new @ r_new < tolerance * max(r @ r, 1e-12)
            x, r, lam = new, r_new, lam / 10
            if done:
                break
        else:
            lam *= 10
    return _rodrigues(x[:3]), x[3:]


def solve_pnp(points: np.ndarray, pixels: np.ndarray, k: np.ndarray,
              backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(R, t) with ``x_cam = R x + t``: OpenCV's iterative ``solvePnP`` (``backend="cv2"``, or ``"auto"`` when it
    imports), else :func:`solve_pnp_numpy` (``"numpy"``)."""
    if backend not in ("auto", "cv2", "numpy"):
        raise ValueError(f"PnP backend={backend!r} is not one of auto, cv2, numpy")
    if backend != "numpy":
        try:
            import cv2
        except ImportError:
            if backend == "cv2":
                raise
        else:
            pts, px = np.ascontiguousarray(points, np.float64), np.ascontiguousarray(pixels, np.float64)
            ok, rvec, tvec = cv2.solvePnP(pts, px, k, None, rvec=np.zeros((3, 1)),
                                          tvec=initial_translation(pts, px, k).reshape(3, 1), useExtrinsicGuess=True,
                                          flags=cv2.SOLVEPNP_ITERATIVE)
            if ok:
                return cv2.Rodrigues(rvec)[0], tvec.ravel()
    return solve_pnp_numpy(points, pixels, k)


def head_pose(mesh: np.ndarray, height: int, width: int, backend: str = "auto") -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees of one face from its Face Mesh landmarks ``mesh`` [468 or 478, >= 2] in
    pixels of a ``height`` x ``width`` frame."""
    mesh = np.asarray(mesh, np.float64)
    if mesh.ndim != 2 or len(mesh) < 468 or mesh.shape[1] < 2:
        raise ValueError(f"head_pose needs Face Mesh landmarks [468, 2] in pixels, got {mesh.shape}")
    rot, _ = solve_pnp(FACE_MODEL_3D, mesh[list(MESH_INDICES), :2], camera_matrix(height, width), backend)
    return euler_from_rotation(rot)


class MeshHeadPose:
    """RGB uint8 frames -> (pitch, yaw, roll) of the most prominent face, or None (MediaPipe Face Mesh, bundled in
    the ``pose`` extra; video mode tracks across frames)."""

    def __init__(self, video: bool = True, min_confidence: float = 0.5, backend: str = "auto") -> None:
        try:
            import mediapipe as mp
        except ImportError as err:
            raise ModuleNotFoundError("head poses need MediaPipe Face Mesh: pip install -e .[pose] "
                                      "(mediapipe==0.10.14)") from err
        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=not video, max_num_faces=1,
                                                    min_detection_confidence=min_confidence)
        self.backend = backend

    def __call__(self, frame: np.ndarray) -> tuple[float, float, float] | None:
        h, w = frame.shape[:2]
        result = self.mesh.process(np.ascontiguousarray(frame))
        if not result.multi_face_landmarks:
            return None
        pts = np.array([[p.x * w, p.y * h] for p in result.multi_face_landmarks[0].landmark])
        return head_pose(pts, h, w, self.backend)

    def close(self) -> None:
        self.mesh.close()
