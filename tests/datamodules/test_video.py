"""The shared frame reader (datamodules/video.py): folders in natural order, videos streamed, and its messages."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from datamodules.video import FrameSource, VideoWriter


def _frame(value: int, h: int = 16, w: int = 24) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_folder_natural_order_names_count_and_random_access(tmp_path) -> None:
    for i in (10, 2, 1):
        Image.fromarray(_frame(i * 20)).save(tmp_path / f"frame_{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    source = FrameSource(str(tmp_path), fps=12, key="task.input")
    assert source.names == ["frame_1", "frame_2", "frame_10"] and len(source) == 3 and source.fps == 12
    assert [int(f[0, 0, 0]) for f in source] == [20, 40, 200]
    assert int(source.read(2)[0, 0, 0]) == 200


def test_video_is_streamed_with_its_rate_and_counted(tmp_path) -> None:
    path = str(tmp_path / "clip.mp4")
    writer = VideoWriter(path, fps=5)
    for i in range(4):
        writer.write(_frame(60 * i))
    writer.close()
    source = FrameSource(path, key="dataset.frames", count_frames=True)
    frames = list(source)
    assert len(source) == 4 and len(frames) == 4 and source.fps == 5 and source.name == "clip"
    assert source.names == [f"frame{i:06d}" for i in range(4)]
    # lossy codec: the grey levels come back within a few steps
    assert [abs(int(f[8, 12, 0]) - 60 * i) <= 4 for i, f in enumerate(frames)] == [True] * 4
    with pytest.raises(ValueError, match="random access needs a folder of frames; dataset.frames=.*clip.mp4"):
        source.read(0)


def test_bad_inputs_name_the_key_and_the_fix(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="task.driving=.*gone.mp4 does not exist; pass a video file"):
        FrameSource(str(tmp_path / "gone.mp4"), key="task.driving")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match=r"task.input=.*empty.mp4 is an empty \(0-byte\) file"):
        FrameSource(str(tmp_path / "empty.mp4"))
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="cannot open video task.input=.*text.mp4"):
        FrameSource(str(tmp_path / "text.mp4"))
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="task.input=.*none contains no images"):
        FrameSource(str(tmp_path / "none"))
    with pytest.raises(ValueError, match="task.input is not set"):
        FrameSource(None)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(_frame(0)).save(mixed / "0.png")
    Image.fromarray(_frame(0, 20, 24)).save(mixed / "1.png")
    (mixed / "2.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"frame .*1.png is 20x24 but the first frame"):
        list(FrameSource(str(mixed)))
    with pytest.raises(ValueError, match=r"cannot read frame .*2.png: .*replace or remove it"):
        FrameSource(str(mixed)).read(2)
