"""Video files for the tests: write frames to a file and read them back, through the shared reader/writer (datamodules/video.py)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import torch

from datamodules.video import DEFAULT_FOLDER_FPS, FrameSource, VideoWriter
from tasks.lst.stylize_video import to_uint8


def write_video(frames: Any, path: str, fps: Any = DEFAULT_FOLDER_FPS, codec: str = "auto",
                crf: int | None = 18) -> str:
    """Write RGB uint8 frames [H, W, 3] (or float [3, H, W] tensors in [0, 1]) to a video file."""
    writer = VideoWriter(path, fps, codec, crf)
    try:
        for frame in frames:
            writer.write(to_uint8(frame) if isinstance(frame, torch.Tensor) else frame)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def read_video(path: str) -> tuple[list[np.ndarray], Fraction]:
    """All frames of a video file (RGB uint8 [H, W, 3]) and its frame rate."""
    source = FrameSource(path)
    return list(source), source.fps
