"""X2Face head pose for real videos: Euler angles, PnP (OpenCV and the NumPy fallback) on projections of the 3-D
face model with known poses, and Face Mesh + PnP on a real photo and its mirror image."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tasks.x2face.headpose import (
    FACE_MODEL_3D,
    camera_matrix,
    euler_from_rotation,
    head_pose,
    project,
    rotation_from_euler,
    solve_pnp,
)

HAS_CV2 = importlib.util.find_spec("cv2") is not None
HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None


def test_euler_round_trip_and_convention() -> None:
    for angles in [(10.0, -25.0, 5.0), (-30.0, 60.0, -80.0), (0.0, 0.0, 0.0)]:
        assert euler_from_rotation(rotation_from_euler(*angles)) == pytest.approx(angles, abs=1e-9)
    # yaw alone turns about the vertical (y) axis: a point on the z axis moves along x
    assert rotation_from_euler(0, 90, 0) @ np.array([0, 0, 1.0]) == pytest.approx([1, 0, 0], abs=1e-12)
    # roll alone turns about the view (z) axis
    assert rotation_from_euler(0, 0, 90) @ np.array([1.0, 0, 0]) == pytest.approx([0, 1, 0], abs=1e-12)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("cv2", marks=pytest.mark.skipif(
    not HAS_CV2, reason="OpenCV comes with the optional pose extra"))])
def test_pnp_recovers_known_poses(backend: str) -> None:
    k = camera_matrix(256, 256)
    rng = np.random.default_rng(0)
    for angles in [(12.0, -30.0, 6.0), (-18.0, 25.0, -10.0), (0.0, 0.0, 0.0)]:
        rot, t = rotation_from_euler(*angles), np.array([1.5, -1.0, 20.0])
        pixels = project(FACE_MODEL_3D, rot, t, k)
        est_rot, est_t = solve_pnp(FACE_MODEL_3D, pixels, k, backend)
        assert euler_from_rotation(est_rot) == pytest.approx(angles, abs=1e-4)
        assert est_t == pytest.approx(t, rel=1e-5)
        noisy, _ = solve_pnp(FACE_MODEL_3D, pixels + rng.normal(0, 0.3, pixels.shape), k, backend)
        assert np.abs(np.array(euler_from_rotation(noisy)) - angles).max() < 3.0     # 0.3 px noise: < 3 degrees


def test_head_pose_from_a_mesh_and_bad_input() -> None:
    mesh = np.zeros((468, 2))
    rot = rotation_from_euler(5.0, -15.0, 2.0)
    from tasks.x2face.headpose import MESH_INDICES

    mesh[list(MESH_INDICES)] = project(FACE_MODEL_3D, rot, np.array([0.0, 0.0, 60.0]), camera_matrix(240, 320))
    assert head_pose(mesh, 240, 320, backend="numpy") == pytest.approx((5.0, -15.0, 2.0), abs=1e-4)
    with pytest.raises(ValueError, match=r"Face Mesh landmarks \[468, 2\]"):
        head_pose(mesh[:10], 240, 320)
    with pytest.raises(ValueError, match="backend='gpu'"):
        solve_pnp(FACE_MODEL_3D, mesh[list(MESH_INDICES)], camera_matrix(240, 320), "gpu")


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="needs the optional 'pose' extra: pip install -e .[pose]")
def test_face_mesh_head_pose_on_a_photo_and_its_mirror() -> None:
    from skimage import data

    from tasks.x2face.headpose import MeshHeadPose

    photo = data.astronaut()
    estimator = MeshHeadPose(video=False)
    try:
        pose = estimator(photo)
        mirrored = estimator(np.ascontiguousarray(photo[:, ::-1]))
    finally:
        estimator.close()
    assert pose is not None and mirrored is not None
    assert all(abs(a) < 45 for a in pose)                                  # a near-frontal portrait
    # a mirror image keeps the pitch and negates the yaw and the roll
    assert mirrored[0] == pytest.approx(pose[0], abs=3)
    assert mirrored[1] == pytest.approx(-pose[1], abs=3) and mirrored[2] == pytest.approx(-pose[2], abs=3)
