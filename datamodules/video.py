"""Video I/O every paper shares (PyAV, whose wheels bundle FFmpeg): PyAV access with an install hint, natural frame
order, frame-rate parsing, the encoder choice, and an atomic video writer. Frames are RGB uint8 arrays [H, W, 3]."""

from __future__ import annotations

import logging
import os
import re
import warnings
from fractions import Fraction
from typing import Any

import numpy as np

from datamodules.files import commit, temporary_path

log = logging.getLogger(__name__)

DEFAULT_FOLDER_FPS = 25  # frames/s of a folder of frames when none is given

_AV_HINT = "video I/O needs PyAV: pip install 'av>=12,<20' (a condsynth dependency; its wheels bundle FFmpeg)"


def av_module():
    try:
        import av
    except ImportError as err:  # pragma: no cover - av is a dependency
        raise ModuleNotFoundError(_AV_HINT) from err
    return av


def natural_key(path: str) -> list[Any]:
    """Sort key: frame_2 before frame_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", os.path.basename(path))]


def to_fps(fps: Any, key: str = "task.fps") -> Fraction:
    try:
        value = Fraction(str(fps)) if not isinstance(fps, Fraction) else fps
    except (TypeError, ValueError, ZeroDivisionError) as err:
        raise ValueError(f"{key}={fps!r} must be a positive number of frames per second") from err
    if value <= 0:
        raise ValueError(f"{key}={fps} must be > 0")
    return value.limit_denominator(1001)


def pick_codec(codec: str) -> str:
    av = av_module()
    if codec != "auto":
        try:
            av.codec.Codec(codec, "w")
        except Exception as err:  # noqa: BLE001 - unknown encoder name: av raises UnknownCodecError/ValueError
            raise ValueError(f"task.codec={codec}: this FFmpeg build has no such encoder ({err}); use auto, "
                             f"libx264 or mpeg4") from err
        return codec
    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001, S112 - try the next encoder
            continue
    raise ValueError("this FFmpeg build has neither libx264 nor mpeg4 encoders; set task.codec=<an encoder>")


class VideoWriter:
    """RGB uint8 frames [H, W, 3] -> a video file (PyAV). Opened on the first frame; written to a temporary file
    next to ``path`` and renamed on :meth:`close`, so a failed run leaves no half-written video under that name."""

    def __init__(self, path: str, fps: Any, codec: str = "auto", crf: int | None = 18) -> None:
        self.path = os.fspath(path)
        self.fps = to_fps(fps)
        self.codec = pick_codec(codec)
        self.crf = crf
        _, ext = os.path.splitext(self.path)
        if not ext:
            raise ValueError(f"task.output={self.path} has no extension; use e.g. .mp4 or .mkv")
        self._tmp = temporary_path(self.path, keep_extension=True)
        self._container = None
        self._stream = None
        self.size: tuple[int, int] | None = None  # (H, W) of the written frames
        self.frames = 0
        self._warned_odd = False

    def _open(self, h: int, w: int) -> None:
        av = av_module()
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            self._container = av.open(self._tmp, mode="w")
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise ValueError(f"cannot write video {self.path}: {err} (is the extension a video container?)") from err
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        if self.codec in ("libx264", "h264") and self.crf is not None:
            stream.options = {"crf": str(int(self.crf))}
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if (h % 2 or w % 2) and not self._warned_odd:
            msg = f"frames are {h}x{w}; yuv420p video needs even sizes, so {self.path} pads them by one pixel"
            log.warning(msg)
            warnings.warn(msg, UserWarning, stacklevel=2)
            self._warned_odd = True
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            h, w = frame.shape[:2]
        if self._container is None:
            self._open(h, w)
            self.size = (h, w)
        elif (h, w) != self.size:
            raise ValueError(f"frame {self.frames} is {h}x{w}, earlier frames are {self.size[0]}x{self.size[1]}")
        av = av_module()
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> str:
        if self._container is None:
            raise ValueError(f"no frame was written to {self.path}")
        for packet in self._stream.encode():  # flush the encoder
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
