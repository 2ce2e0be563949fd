"""task=crop_faces: the crop geometry at the frame borders, and the per-video flow with a stand-in detector (MediaPipe
is optional and not installed by make install)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tasks.x2face.crop_faces import crop_faces, crop_square, square_box
from tests.conftest import compose_config


def test_square_box_is_centred_and_expanded() -> None:
    assert square_box((10, 20, 30, 60), 1.6) == (-12, 8, 52, 72)  # centre (20, 40), side 40 x 1.6 = 64
    assert square_box((0, 0, 10, 10), 1.0) == (0, 0, 10, 10)


def test_crop_pads_outside_the_frame() -> None:
    frame = np.full((20, 30, 3), 200, dtype=np.uint8)
    crop = crop_square(frame, (-10, -10, 10, 10), 20)  # top-left corner: 3/4 outside
    assert crop.shape == (20, 20, 3)
    assert (crop[:10, :10] == 0).all() and (crop[12:, 12:] == 200).all()
    crop = crop_square(frame, (25, 15, 35, 25), 10)  # bottom-right corner
    assert (crop[:5, :5] == 200).all() and (crop[6:, 6:] == 0).all()
    assert (crop_square(frame, (40, 40, 50, 50), 8) == 0).all()  # fully outside: black


def test_crop_faces_layout_and_no_face_error(tmp_path) -> None:
    src = tmp_path / "raw" / "alice" / "clip1"
    src.mkdir(parents=True)
    for t in range(3):
        Image.fromarray(np.full((40, 60, 3), 50 * t, dtype=np.uint8)).save(src / f"{t}.png")
    cfg = compose_config(["model=x2face", "task=crop_faces", f"task.input={tmp_path / 'raw'}",
                          f"task.output={tmp_path / 'out'}", "task.size=32"], tmp_path / "run", tiny=False)

    def detector(frame):  # a face in the middle of the first two frames only
        return (20.0, 10.0, 40.0, 30.0) if frame.mean() < 75 else None

    def pose_fn(frame):  # a head pose for the first frame only: the second is skipped like a missed face
        return (1.5, -20.25, 3.0) if frame.mean() < 25 else None

    counts = crop_faces(cfg, detector=detector, pose_fn=pose_fn)
    assert counts == {"alice/clip1": 1}
    files = sorted((tmp_path / "out" / "alice" / "clip1").iterdir())
    assert [f.name for f in files] == ["000000.png", "pose.csv"]
    assert Image.open(files[0]).size == (32, 32)
    assert files[1].read_text() == "pitch,yaw,roll\n1.5000,-20.2500,3.0000\n"
    cfg.task.head_pose = False                     # no pose.csv, every detected frame
    counts = crop_faces(cfg, detector=detector)
    assert counts == {"alice/clip1": 2}
    with pytest.raises(ValueError, match="no face found in any frame of .*clip1"):
        crop_faces(cfg, detector=lambda frame: None)
