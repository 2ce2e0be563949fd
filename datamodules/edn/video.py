"""Frames of a video file or a frame folder, and an mp4 writer, for Everybody Dance Now's data and tasks
(PyAV, whose wheels bundle FFmpeg). Frames are RGB uint8 arrays [H, W, 3]."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image

from datamodules.files import commit, temporary_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_FPS = 25


def natural_key(path: str) -> list[Any]:
    """Sort key: frame_2 before frame_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", os.path.basename(path))]


def _av():
    try:
        import av
    except ImportError as err:  # pragma: no cover - av is a dependency
        raise ModuleNotFoundError("video I/O needs PyAV: pip install 'av>=12,<20'") from err
    return av


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
        av = _av()
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
        av = _av()
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


class VideoWriter:
    """RGB frames -> a video file, written to a temporary name and renamed on :meth:`close`; odd sizes are padded
    by one pixel (yuv420p). Codec: libx264 when this FFmpeg has it, else mpeg4."""

    def __init__(self, path: str, fps: Any = DEFAULT_FPS, crf: int = 18) -> None:
        self.path = os.fspath(path)
        self.fps = Fraction(str(fps)).limit_denominator(1001)
        self.crf = crf
        self._tmp = temporary_path(self.path, keep_extension=True)
        self._container = None
        self._stream = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        av = _av()
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self._container is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._container = av.open(self._tmp, mode="w")
            codec = "libx264"
            try:
                av.codec.Codec(codec, "w")
            except Exception:  # noqa: BLE001 - no libx264 in this FFmpeg build
                codec = "mpeg4"
            self._stream = self._container.add_stream(codec, rate=self.fps)
            self._stream.height, self._stream.width = frame.shape[:2]
            self._stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                self._stream.options = {"crf": str(self.crf)}
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> str:
        if self._container is None:
            raise ValueError(f"no frame was written to {self.path}")
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        commit(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - best effort on the error path
                pass
            self._container = None
        if os.path.exists(self._tmp):
            os.remove(self._tmp)
