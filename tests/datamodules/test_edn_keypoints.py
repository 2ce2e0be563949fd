"""Everybody Dance Now keypoints: OpenPose JSON, format mappings, smoothing and rendering,
against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datamodules.edn.keypoints import (
    MEDIAPIPE_468_TO_FACE_70,
    FramePose,
    KeypointError,
    coco18_to_body25,
    mediapipe33_to_body25,
    mediapipe468_to_face70,
    pick_person,
    read_frame_pose,
    read_openpose_json,
    smooth_sequence,
    write_openpose_json,
)
from datamodules.edn.render import face_box, render_pose


def _body(n: int = 25, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(0, 100, (n, 2)).round(2), rng.uniform(0.1, 1, (n, 1)).round(3)], 1)


def test_json_round_trip_with_face_and_hands(tmp_path) -> None:
    person = FramePose(_body(), face=_body(70, 1), hand_left=_body(21, 2), hand_right=_body(21, 3))
    path = write_openpose_json(str(tmp_path / "f_keypoints.json"), [person])
    raw = json.load(open(path))
    assert len(raw["people"][0]["pose_keypoints_2d"]) == 75
    back = read_openpose_json(path)[0]
    for name in ("body", "face", "hand_left", "hand_right"):
        np.testing.assert_allclose(getattr(back, name), getattr(person, name), atol=1e-4)
    coco = FramePose(_body(18))
    back = read_openpose_json(write_openpose_json(str(tmp_path / "c.json"), [coco]))[0]
    assert back.format == "COCO_18" and back.face is None


def test_several_people_and_no_people(tmp_path) -> None:
    weak, strong = _body(seed=1), _body(seed=2)
    weak[:, 2], strong[:, 2] = 0.2, 0.9
    path = write_openpose_json(str(tmp_path / "two.json"), [FramePose(weak), FramePose(strong)])
    np.testing.assert_allclose(read_frame_pose(path).body, strong, atol=1e-4)  # the most confident person
    assert read_frame_pose(write_openpose_json(str(tmp_path / "none.json"), [])) is None
    assert pick_person([]) is None


def test_bad_json_files_name_the_file(tmp_path) -> None:
    with pytest.raises(KeypointError, match="missing.json does not exist.*extract_poses"):
        read_openpose_json(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"people": [{"pose_keypoints_2d": [1, 2, 3, 4]}]}))
    with pytest.raises(KeypointError, match="bad.json.*4 numbers"):
        read_openpose_json(str(bad))
    bad.write_text(json.dumps({"people": [{"pose_keypoints_2d": [0.0] * 60}]}))
    with pytest.raises(KeypointError, match="20 joints"):
        read_openpose_json(str(bad))


def test_coco18_to_body25_by_hand() -> None:
    coco = np.zeros((18, 3))
    coco[:, 0] = np.arange(18)
    coco[:, 1] = 100 + np.arange(18)
    coco[:, 2] = 1
    body = coco18_to_body25(coco)
    assert body[1].tolist() == [1, 101, 1]            # Neck stays
    assert body[8].tolist() == [9.5, 109.5, 1]         # MidHip = mean(RHip 8, LHip 11)
    assert body[9].tolist() == [8, 108, 1]             # RHip
    assert body[14].tolist() == [13, 113, 1]           # LAnkle = COCO 13
    assert body[18].tolist() == [17, 117, 1]           # LEar = COCO 17
    assert (body[19:, 2] == 0).all()                   # no feet in COCO-18


def test_mediapipe33_to_body25_by_hand() -> None:
    mp = np.zeros((33, 3))
    mp[:, 0] = np.arange(33) * 2
    mp[:, 1] = np.arange(33) * 3
    mp[:, 2] = 0.9
    body = mediapipe33_to_body25(mp)
    assert body[1].tolist() == [23, 34.5, 0.9]      # Neck = mean(11, 12): x (22+24)/2, y (33+36)/2
    assert body[8].tolist() == [47, 70.5, 0.9]      # MidHip = mean(23, 24)
    assert body[2, :2].tolist() == [24, 36]         # RShoulder = 12
    assert body[11, :2].tolist() == [56, 84]        # RAnkle = 28
    assert body[15, :2].tolist() == [10, 15]        # REye = 5
    assert body[24, :2].tolist() == [60, 90]        # RHeel = 30
    assert body[20, 2] == 0 and body[23, 2] == 0    # small toes: none
    mp[12, 2] = 0.0                                 # one shoulder unseen: no neck
    assert mediapipe33_to_body25(mp)[1, 2] == 0


def test_smoothing_median_ignores_low_confidence() -> None:
    track = np.zeros((5, 1, 3))
    track[:, 0, 0] = [10, 12, 100, 14, 16]   # an outlier at t=2
    track[:, 0, 2] = [1, 1, 1, 1, 0.01]      # t=4 below the confidence threshold
    out = smooth_sequence(track, window=3, mode="median", min_confidence=0.05)
    assert out[:, 0, 0].tolist() == [11, 12, 14, 57, 14]   # t=4: only t=3 is confident in its window
    mean = smooth_sequence(track, window=3, mode="mean")
    assert mean[1, 0, 0] == pytest.approx((10 + 12 + 100) / 3)


def test_renderer_against_known_pixels() -> None:
    body = np.zeros((25, 3))
    body[0] = [10, 32, 1]   # nose
    body[1] = [54, 32, 1]   # neck: limb [0, 1] in colour 0 (official BGR [255, 0, 85] -> RGB (85, 0, 255))
    img = render_pose(FramePose(body), 64, 64, stick_width=2)
    assert img[0, 0].tolist() == [255, 255, 255]                 # white background
    assert img[32, 32].tolist() == [153, 102, 255]               # 0.4 * white + 0.6 * (85, 0, 255)
    assert img[34, 32].tolist() == [153, 102, 255]               # on the ellipse's minor semi-axis (2 px)
    assert img[35, 32].tolist() == [255, 255, 255]               # just outside it
    assert img[32, 7].tolist() == [85, 0, 255]                   # the nose dot (radius 4), outside the limb
    assert img[32, 57].tolist() == [0, 0, 255]                   # the neck dot: BGR [255, 0, 0] -> blue
    body[1, 2] = 0
    assert (render_pose(FramePose(body), 64, 64, stick_width=2)[32, 32] == 255).all()  # no limb to a missing joint


def test_face_box_is_clamped_at_the_borders() -> None:
    body = np.zeros((25, 3))
    body[0] = [3, 2, 1]
    assert face_box(FramePose(body), 64, 128) == (0, 0, 16)       # 128 * 64 / 512 = 16 px, clamped top-left
    body[0] = [127, 63, 1]
    assert face_box(FramePose(body), 64, 128) == (48, 112, 16)    # clamped bottom-right
    body[0] = [60, 30, 1]
    assert face_box(FramePose(body), 64, 128) == (22, 52, 16)
    assert face_box(None, 64, 128) == (0, 56, 16)


def test_face_mesh_to_openpose_70_by_hand() -> None:
    assert len(MEDIAPIPE_468_TO_FACE_70) == 68 and len(set(MEDIAPIPE_468_TO_FACE_70)) == 68
    assert max(MEDIAPIPE_468_TO_FACE_70) < 468
    mesh = np.stack([np.arange(468.0), 1000 + np.arange(468.0), np.full(468, 0.9)], axis=1)
    face = mediapipe468_to_face70(mesh)
    assert face.shape == (70, 3)
    assert face[0].tolist() == [162, 1162, 0.9] and face[8].tolist() == [152, 1152, 0.9]   # jaw end, chin
    assert face[30].tolist() == [4, 1004, 0.9] and face[62].tolist() == [13, 1013, 0.9]    # nose tip, inner lip
    # no irises in a 468-point mesh: the pupils are the means of each eye's six contour points
    assert face[68, :2].tolist() == pytest.approx([(33 + 160 + 158 + 133 + 153 + 144) / 6,
                                                   1000 + (33 + 160 + 158 + 133 + 153 + 144) / 6])
    assert face[69, 0] == pytest.approx((362 + 385 + 387 + 263 + 373 + 380) / 6)
    # a refined 478-point mesh: the iris centres 468 (right) and 473 (left)
    refined = np.concatenate([mesh, [[5000 + k, 6000 + k, 0.8] for k in range(10)]])
    face = mediapipe468_to_face70(refined)
    assert face[68].tolist() == [5000, 6000, 0.8] and face[69].tolist() == [5005, 6005, 0.8]
    with pytest.raises(KeypointError, match=r"\[468, 3\] or \[478, 3\]"):
        mediapipe468_to_face70(mesh[:100])


def test_face_mesh_is_rendered_and_boxed_as_openpose_70() -> None:
    body = np.zeros((25, 3))
    body[0] = [20, 10, 1]                                          # the body's nose
    rng = np.random.default_rng(0)
    mesh = np.concatenate([rng.uniform(30, 60, (468, 2)), np.ones((468, 1))], axis=1)
    mesh[4] = [40, 30, 1]                                          # Face Mesh nose tip -> OpenPose point 30
    as_mesh = render_pose(FramePose(body, face=mesh), 64, 128)
    as_70 = render_pose(FramePose(body, face=mediapipe468_to_face70(mesh)), 64, 128)
    assert np.array_equal(as_mesh, as_70)                          # a mesh is drawn as its 8 sparse points
    assert (as_70 == 0).all(axis=2).sum() > 0                      # the face dots are drawn (black)
    assert face_box(FramePose(body, face=mesh), 64, 128) == (22, 32, 16)   # centred on the nose tip (40, 30)
    faint = mesh.copy()
    faint[:, 2] = 0.1                                              # mean confidence < 0.2: the body's nose
    assert face_box(FramePose(body, face=faint), 64, 128) == (2, 12, 16)


@pytest.mark.parametrize("value, message", [
    ("NaN", r"pose_keypoints_2d\[4\] is nan \(1 value\(s\) not finite\)"),
    ("Infinity", r"pose_keypoints_2d\[4\] is inf"),
    ('"12.5"', r"pose_keypoints_2d\[4\] is '12.5' \(str\), not a number"),
    ("true", r"pose_keypoints_2d\[4\] is True \(bool\)"),
])
def test_non_numeric_keypoints_name_the_file(tmp_path, value, message) -> None:
    """Issue 16 §5: NaN / Infinity (which json.load accepts) and strings stop with one error naming the file."""
    body = ["0"] * 75
    body[4] = value
    path = tmp_path / "frame_keypoints.json"
    path.write_text('{"people": [{"pose_keypoints_2d": [' + ", ".join(body) + "]}]}")
    with pytest.raises(KeypointError, match=f"frame_keypoints.json: {message}"):
        read_openpose_json(str(path))
    path.write_text('{"people": [{"pose_keypoints_2d": "1, 2, 3"}]}')
    with pytest.raises(KeypointError, match="frame_keypoints.json: pose_keypoints_2d is str"):
        read_openpose_json(str(path))
