"""Frames of a video file or a frame folder for Everybody Dance Now's data and tasks, and the one-time decode of a
training video into a folder of frames (:func:`cache_video_frames`); the reader, the writer and PyAV access are the
shared ones (:mod:`datamodules.video`). Frames are RGB uint8 arrays [H, W, 3]."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from PIL import Image

from datamodules.video import FrameSource as _SharedFrameSource

CACHE_META = "frames.json"


class FrameSource(_SharedFrameSource):
    """The shared reader, always with a frame count: EDN matches frames to keypoint JSON files one to one."""

    def __init__(self, path: str, fps: Any = None, key: str = "input") -> None:
        super().__init__(path, fps, key, count_frames=True)


def frame_cache_dir(video: str, size: tuple[int, int], root: str | None = None) -> str:
    """Where :func:`cache_video_frames` keeps ``video``'s frames at ``size`` [H, W]:
    ``<root>/<video file name>.frames/<H>x<W>``, ``root`` defaulting to the video's own folder."""
    folder = os.fspath(root) if root else os.path.dirname(os.path.abspath(video))
    return os.path.join(folder, f"{os.path.basename(video)}.frames", f"{size[0]}x{size[1]}")


def _source_stamp(video: str) -> dict[str, int]:
    st = os.stat(video)
    return {"bytes": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _read_meta(folder: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(folder, CACHE_META)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cache_video_frames(source: FrameSource, size: tuple[int, int], root: str | None = None,
                       key: str = "dataset.frames") -> tuple[FrameSource, tuple[int, int]]:
    """Decode the video of ``source`` once, resized to ``size`` [H, W], into PNG files in
    :func:`frame_cache_dir`, and return (a :class:`FrameSource` on that folder, read one frame per index; the video's
    frame size [H, W]). So a dataset never holds the decoded video in memory.

    The folder's ``frames.json`` records the video's byte size and modification time, the frame count and size; a
    cache that matches is reused, one that does not is rebuilt. Decoding goes to a ``.partial-*`` folder beside the
    cache that is renamed into place when complete (atomic on one file system), so a crash or a second process (DDP
    ranks) never leaves or reads half a cache."""
    if source.is_folder:
        raise ValueError("cache_video_frames takes a video file; a frame folder is read lazily as it is")
    video = source.path
    final = frame_cache_dir(video, size, root)
    stamp = _source_stamp(video)
    meta = _read_meta(final)
    if meta is None or meta.get("source") != stamp:
        parent = os.path.dirname(final)
        try:
            os.makedirs(parent, exist_ok=True)
            partial = tempfile.mkdtemp(prefix=".partial-", dir=parent)
        except OSError as err:
            raise ValueError(f"cannot write the frame cache of {key}={video} in {parent}: {err}; set "
                             "dataset.frame_cache=<a writable folder>") from err
        try:
            meta = _decode_into(source, size, partial, stamp, key)
            if os.path.isdir(final):  # a stale cache (the video changed): move it aside, then drop it
                stale = tempfile.mkdtemp(prefix=".stale-", dir=parent)
                os.rename(final, os.path.join(stale, "old"))
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.rename(partial, final)
            except OSError:  # another process finished the same cache first: use theirs
                if _read_meta(final) is None:
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        meta = _read_meta(final) or meta
    return FrameSource(final, fps=source.fps, key=key), tuple(meta["frame_size"])


def _decode_into(source: FrameSource, size: tuple[int, int], folder: str, stamp: dict[str, int],
                 key: str) -> dict[str, Any]:
    """Every frame of ``source`` resized to ``size`` as ``frame%06d.png`` in ``folder``, then ``frames.json``."""
    h, w = size
    count, frame_size = 0, None
    for frame in source:  # a frame that does not decode: the shared reader's message (key, path, frame index)
        frame_size = frame.shape[:2]
        img = Image.fromarray(frame)
        if frame_size != (h, w):
            img = img.resize((w, h), Image.BICUBIC)
        try:
            img.save(os.path.join(folder, f"frame{count:06d}.png"))
        except OSError as err:
            raise ValueError(f"cannot write frame {count} of {key}={source.path} into the frame cache {folder}: "
                             f"{err}; set dataset.frame_cache=<a writable folder with space>") from err
        count += 1
    if not count:
        raise ValueError(f"{key}={source.path} has no decodable frames; pass a video file FFmpeg decodes or a "
                         "folder of frames")
    meta = {"source": stamp, "count": count, "frame_size": list(frame_size), "size": [h, w]}
    with open(os.path.join(folder, CACHE_META), "w") as f:
        json.dump(meta, f)
    return meta
