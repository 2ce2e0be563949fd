"""task=crop_faces: the crop geometry at the frame borders, and the per-video flow with a stand-in detector (MediaPipe
is optional and not installed by make install)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from tasks.config import ConfigError
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


def _faces_frame(scale: float, n: int = 1, size: int = 512) -> np.ndarray:
    """``n`` astronauts side by side, each ``scale`` x the frame width (her face is about a fifth of the photo), on
    grey."""
    from skimage import data

    canvas = Image.new("RGB", (size, size), (120, 130, 140))
    side = int(size * scale)
    photo = Image.fromarray(data.astronaut()).resize((side, side))
    for k in range(n):
        canvas.paste(photo, (int((k + 0.5) * size / n - side / 2), size // 2 - side // 2))
    return np.asarray(canvas)


def _write_clip(folder, frame: np.ndarray, n: int = 2) -> None:
    folder.mkdir(parents=True)
    for t in range(n):
        Image.fromarray(frame).save(folder / f"{t:03d}.png")


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="needs mediapipe==0.10.14")
def test_crop_faces_finds_small_faces_and_says_how_many(tmp_path, capsys) -> None:
    """Issue 21: no face was found under about a fifth of the frame width (one person at 256 px in a 512-px frame; two
    people side by side), and a second face was dropped without a word. The full-range detector (+ tiles) finds them;
    the summary says how many faces were seen and which one was kept."""
    raw = tmp_path / "raw"
    _write_clip(raw / "alice" / "fifth", _faces_frame(1.0))      # face ~1/5 of the frame width
    _write_clip(raw / "alice" / "tenth", _faces_frame(0.5))      # face ~1/10
    _write_clip(raw / "bob" / "two", _faces_frame(0.45, n=2))    # two people side by side
    cfg = compose_config(["model=x2face", "task=crop_faces", f"task.input={raw}", f"task.output={tmp_path / 'out'}",
                          "task.size=64", "task.head_pose=false"], tmp_path / "run", tiny=False)
    counts = crop_faces(cfg)
    assert counts == {"alice/fifth": 2, "alice/tenth": 2, "bob/two": 2}
    assert "bob/two: up to 2 faces in a frame; cropped face 0 by size" in capsys.readouterr().out
    _write_clip(tmp_path / "tiny" / "carol" / "far", _faces_frame(0.04))  # a face of ~4 px: below what it finds
    cfg.task.input = str(tmp_path / "tiny")
    with pytest.raises(ValueError, match=r"no face found in any frame of .*far \(first: 000, 512 px wide\): the "
                                         r"detector finds faces down to about 1/16 of the frame width"):
        crop_faces(cfg)


def test_crop_faces_input_forms_fail_at_once(tmp_path) -> None:
    """Issue 21: ``task.input=<identity>/<video>`` (the README's old form) failed only after MediaPipe had loaded
    (55 s). A video folder, an identity folder or a file given as task.input stops before any model loads, with the
    form to use."""
    clip = tmp_path / "raw" / "alice" / "clip1"
    _write_clip(clip, np.zeros((8, 8, 3), np.uint8), 1)

    def no_detector(frame):
        raise AssertionError("the detector must not be reached")

    def cfg(path):
        return compose_config(["model=x2face", "task=crop_faces", f"task.input={path}", f"task.output={tmp_path}/o",
                               "task.head_pose=false"], tmp_path / "run", tiny=False)

    with pytest.raises(ConfigError, match=f"holds frames itself, so it is one video: pass task.input={clip.parents[1]}$"):
        crop_faces(cfg(clip), detector=no_detector)
    with pytest.raises(ConfigError, match=f"000.png is a file; pass the folder .*: task.input={clip.parents[1]}$"):
        crop_faces(cfg(clip / "000.png"), detector=no_detector)
    (tmp_path / "vids" / "dave").mkdir(parents=True)
    (tmp_path / "vids" / "dave" / "a.mp4").write_bytes(b"")
    with pytest.raises(ConfigError, match=f"holds videos itself, so it is one identity: pass task.input={tmp_path}/vids$"):
        crop_faces(cfg(tmp_path / "vids" / "dave"), detector=no_detector)
    assert crop_faces(cfg(tmp_path / "raw"), detector=lambda f: [(1.0, 1.0, 5.0, 5.0)]) == {"alice/clip1": 1}
