"""Frames of a video file or a frame folder for Everybody Dance Now's data and tasks (count, names, random access
in folders); the writer, PyAV access and natural order are the shared ones (:mod:`datamodules.video`).
Frames are RGB uint8 arrays [H, W, 3]."""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image

from datamodules.video import av_module, natural_key

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_FPS = 25


class FrameSource:
    """Frames of ``path`` (a video file or a folder of images, natural order) with ``fps``, ``count`` and
    ``names`` (one stem per frame: the image file names, or ``frame000000``.. for a video)."""

    def __init__(self, path: str, fps: Any = None, key: str = "input") -> None:
        self.path = os.fspath(path)
        self.is_folder = os.path.isdir(self.path)
        if self.is_folder:
            self.files = sorted((os.path.join(self.path, f) for f in os.listdir(self.path)
                                 if f.lower().endswith(IMAGE_EXTENSIONS)), key=natural_key)
            if not self.files:
                raise ValueError(f"{key}={self.path} has no images ({', '.join(IMAGE_EXTENSIONS)}); pass a video "
                                 "file or a folder of frames")
            self.count = len(self.files)
            self.names = [os.path.splitext(os.path.basename(f))[0] for f in self.files]
            self.fps = Fraction(str(fps if fps is not None else DEFAULT_FPS)).limit_denominator(1001)
            return
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{key}={self.path} does not exist; pass a video file or a folder of frames")
        if os.path.getsize(self.path) == 0:
            raise ValueError(f"{key}={self.path} is an empty (0-byte) file; copy the video again or pass a "
                             "folder of frames")
        av = av_module()
        try:
            with av.open(self.path, mode="r") as container:
                if not container.streams.video:
                    raise ValueError(f"{key}={self.path} has no video stream; pass a video file")
                stream = container.streams.video[0]
                rate = fps if fps is not None else (stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
                self.fps = Fraction(str(rate)).limit_denominator(1001)
                self.count = int(stream.frames) or sum(1 for _ in container.decode(stream))
        except (av.error.FFmpegError, OSError) as err:
            raise ValueError(f"cannot open video {key}={self.path}: {err}; pass a video file FFmpeg decodes or a "
                             "folder of frames") from err
        self.names = [f"frame{i:06d}" for i in range(self.count)]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.is_folder:
            for f in self.files:
                try:
                    with Image.open(f) as img:
                        yield np.array(img.convert("RGB"))
                except (OSError, SyntaxError, ValueError) as err:
                    raise ValueError(f"cannot read frame {f}: {err}; replace or remove it") from err
            return
        av = av_module()
        with av.open(self.path, mode="r") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")

    def read(self, index: int) -> np.ndarray:
        """One frame of a folder (random access); videos are read in order (iterate)."""
        if not self.is_folder:
            raise ValueError("random access needs a frame folder; iterate over a video")
        with Image.open(self.files[index]) as img:
            return np.array(img.convert("RGB"))
