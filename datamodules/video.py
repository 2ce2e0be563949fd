"""Video I/O every paper shares (PyAV, whose wheels bundle FFmpeg): PyAV access with an install hint, natural frame
order, frame-rate parsing, one frame reader for a video file or a folder of frames, the encoder choice, and an atomic
video writer. Frames are RGB uint8 arrays [H, W, 3]."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image

from datamodules.atomic_writes import commit, temporary_path
from datamodules.transforms import TooLargeError, bomb_error, check_pixels

log = logging.getLogger(__name__)

ODD_SIZE_MODES = ("keep", "pad")  # VideoWriter: odd frame sizes kept (4:4:4) or padded to even (4:2:0)
#: audio codecs each container takes as they are (others are re-encoded to AAC); Matroska takes anything FFmpeg has
COPY_AUDIO = {".mp4": ("aac", "mp3", "ac3", "eac3", "opus", "alac", "flac"), ".m4v": ("aac", "mp3", "ac3"),
              ".mov": ("aac", "mp3", "ac3", "alac", "pcm_s16le", "pcm_s24le"), ".avi": ("mp3", "ac3", "pcm_s16le"),
              ".webm": ("opus", "vorbis")}
DEFAULT_FOLDER_FPS = 25  # frames/s of a folder of frames when none is given
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # what a folder of frames holds

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


def _fps_key(key: str) -> str:
    """The option that sets the frame rate of ``key``'s frames (task.input -> task.fps)."""
    return key.rsplit(".", 1)[0] + ".fps" if key.startswith("task.") else "fps"


class FrameSource:
    """The frames of a video file (anything FFmpeg decodes) or of a folder of images (natural order: ``frame_2``
    before ``frame_10``), streamed as RGB uint8 arrays [H, W, 3].

    ``key`` is the config key the path came from, so that every message names it. ``fps`` overrides a video's own
    rate and sets a folder's (default :data:`DEFAULT_FOLDER_FPS`). ``count`` is the number of frames when the
    container says it (``None`` otherwise; ``count_frames=True`` decodes once to count). ``name`` is the file or
    folder stem; ``names`` gives one stem per frame (the image names, or ``frame000000``... for a video).

    ``max_pixels``: frames above it (width x height; None = no cap) stop with one error naming the file, its size and
    ``cap_key`` (:func:`datamodules.transforms.check_pixels`), read from the container's header or each image's header
    before anything is decoded."""

    def __init__(self, path: Any, fps: Any = None, key: str = "task.input", count_frames: bool = False,
                 max_pixels: int | None = None, cap_key: str = "task.max_pixels") -> None:
        if path is None or str(path) == "":
            raise ValueError(f"{key} is not set: pass {key}=<a video file or a folder of frames>")
        self.path, self.key = os.fspath(str(path)), key
        self.max_pixels, self.cap_key = max_pixels, cap_key
        self.size: tuple[int, int] | None = None  # (H, W) from the container (a video file)
        self.is_folder = os.path.isdir(self.path)
        self.count: int | None = None
        if self.is_folder:
            self.files = sorted((os.path.join(self.path, f) for f in os.listdir(self.path)
                                 if f.lower().endswith(FRAME_EXTENSIONS) and not f.startswith(".")), key=natural_key)
            if not self.files:
                raise ValueError(f"{key}={self.path} contains no images ({', '.join(FRAME_EXTENSIONS)}); pass a video "
                                 "file or a folder of frames")
            self.count = len(self.files)
            self.fps = to_fps(fps if fps is not None else DEFAULT_FOLDER_FPS, _fps_key(key))
            self.name = os.path.basename(os.path.normpath(self.path)) or "frames"
            return
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{key}={self.path} does not exist; pass a video file or a folder of frames")
        if os.path.getsize(self.path) == 0:
            raise ValueError(f"{key}={self.path} is an empty (0-byte) file; copy the video again or pass a folder of "
                             "frames")
        av = av_module()
        try:
            with av.open(self.path, mode="r") as container:
                if not container.streams.video:
                    raise ValueError(f"{key}={self.path} has no video stream; pass a video file or a folder of frames")
                stream = container.streams.video[0]
                width, height = int(stream.codec_context.width), int(stream.codec_context.height)
                check_pixels(f"{key}={self.path}", width, height, max_pixels, cap_key)
                self.size = (height, width)
                rate = fps if fps is not None else (stream.average_rate or stream.guessed_rate or DEFAULT_FOLDER_FPS)
                self.fps = to_fps(rate, _fps_key(key))
                self.count = int(stream.frames) or None
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot open video {key}={self.path}: {err}; pass a video file FFmpeg decodes or a "
                             "folder of frames") from err
        if self.count is None and count_frames:
            self.count = sum(1 for _ in self)
        self.name = os.path.splitext(os.path.basename(self.path))[0]

    def __len__(self) -> int:
        if self.count is None:
            raise TypeError(f"{self.key}={self.path} does not say how many frames it has; iterate over it")
        return self.count

    @property
    def names(self) -> list[str]:
        if self.is_folder:
            return [os.path.splitext(os.path.basename(f))[0] for f in self.files]
        return [f"frame{i:06d}" for i in range(len(self))]

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._folder_frames() if self.is_folder else self._video_frames()

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` of a folder (random access; iterate over a video)."""
        if not self.is_folder:
            raise ValueError(f"random access needs a folder of frames; {self.key}={self.path} is a video")
        return self._read_image(self.files[index])

    def _read_image(self, path: str) -> np.ndarray:
        try:
            with Image.open(path) as img:
                check_pixels(path, *img.size, self.max_pixels, self.cap_key)
                return np.array(img.convert("RGB"))
        except Image.DecompressionBombError as err:
            raise bomb_error(path, err, self.cap_key) from err
        except TooLargeError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise ValueError(f"cannot read frame {path}: {type(err).__name__}: {err}; replace or remove it") from err

    def _folder_frames(self) -> Iterator[np.ndarray]:
        size = None
        for path in self.files:
            arr = self._read_image(path)
            if size is None:
                size = arr.shape[:2]
            elif arr.shape[:2] != size:
                raise ValueError(f"frame {path} is {arr.shape[0]}x{arr.shape[1]} but the first frame of {self.path} is "
                                 f"{size[0]}x{size[1]}: every frame of a video must have one size")
            yield arr

    def _video_frames(self) -> Iterator[np.ndarray]:
        av = av_module()
        index = 0
        try:
            with av.open(self.path, mode="r") as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    yield frame.to_ndarray(format="rgb24")
                    index += 1
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot decode video {self.key}={self.path} at frame {index}: {err}; re-encode it "
                             "(ffmpeg -i in.mp4 -c:v libx264 out.mp4) or pass a folder of frames") from err


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
    next to ``path`` and renamed on :meth:`close`, so a failed run leaves no half-written video under that name.

    The file keeps the frames' size. H.264 in 4:2:0 (``yuv420p``, what every player decodes) needs even sizes, so
    ``odd_size="keep"`` (default) encodes an odd-sized video in 4:4:4 (``yuv444p``: any size, played by FFmpeg/VLC/mpv,
    not by every browser), and ``odd_size="pad"`` pads one replicated pixel into a 4:2:0 file (with a warning).
    Encoders other than libx264 always pad. ``audio`` (a media file with an audio track, or ``(samples, rate)``
    float samples in [-1, 1]) is muxed in on :meth:`close` (:func:`mux_audio`)."""

    def __init__(self, path: str, fps: Any, codec: str = "auto", crf: int | None = 18, odd_size: str = "keep",
                 audio: Any = None) -> None:
        self.path = os.fspath(path)
        self.fps = to_fps(fps)
        self.codec = pick_codec(codec)
        self.crf = crf
        if odd_size not in ODD_SIZE_MODES:
            raise ValueError(f"task.odd_size={odd_size!r} is unknown; use one of {ODD_SIZE_MODES}")
        self.odd_size = odd_size
        self.audio = audio
        _, ext = os.path.splitext(self.path)
        if not ext:
            raise ValueError(f"task.output={self.path} has no extension; use e.g. .mp4 or .mkv")
        self._tmp = temporary_path(self.path, keep_extension=True)
        self._container = None
        self._stream = None
        self.size: tuple[int, int] | None = None  # (H, W) of the written frames
        self.pix_fmt = "yuv420p"
        self.audio_note = "no audio"  # what close() did with the audio: "audio copied (aac)", ...
        self.frames = 0
        self._pad = False

    def _open(self, h: int, w: int) -> None:
        av = av_module()
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            self._container = av.open(self._tmp, mode="w")
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise ValueError(f"cannot write video {self.path}: {err} (is the extension a video container?)") from err
        odd = bool(h % 2 or w % 2)
        keep = odd and self.odd_size == "keep" and self.codec in ("libx264", "h264")
        self._pad = odd and not keep
        if self._pad:
            msg = (f"frames are {h}x{w}; yuv420p video needs even sizes, so {self.path} pads them by one pixel "
                   "(task.odd_size=keep writes them as they are, in 4:4:4)")
            log.warning(msg)
            warnings.warn(msg, UserWarning, stacklevel=3)
            h, w = h + h % 2, w + w % 2
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height = w, h
        self.pix_fmt = "yuv444p" if keep else "yuv420p"
        stream.pix_fmt = self.pix_fmt
        if self.codec in ("libx264", "h264") and self.crf is not None:
            stream.options = {"crf": str(int(self.crf))}
        self._stream = stream
        self.size = (h, w)

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if self._container is None:
            self._open(h, w)
            self._in_size = (h, w)
        elif (h, w) != self._in_size:
            raise ValueError(f"frame {self.frames} is {h}x{w}, earlier frames are {self._in_size[0]}x"
                             f"{self._in_size[1]}")
        if self._pad:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
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
        if self.audio is not None:
            muxed = temporary_path(self.path, keep_extension=True)
            try:
                self.audio_note = mux_audio(self._tmp, self.audio, muxed)
            except BaseException:
                if os.path.exists(muxed):
                    os.remove(muxed)
                raise
            os.remove(self._tmp)
            self._tmp = muxed
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


def has_audio(path: str) -> bool:
    """Whether the media file ``path`` (a video file; False for a folder) has an audio track."""
    if os.path.isdir(path):
        return False
    av = av_module()
    try:
        with av.open(path, mode="r") as container:
            return bool(container.streams.audio)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return False


def _encoder_for(ext: str) -> str:
    return {".webm": "libopus", ".avi": "mp3"}.get(ext, "aac")


def mux_audio(video: str, audio: Any, out: str) -> str:
    """Write ``out`` = the video track of ``video`` (copied, not re-encoded) + ``audio``: the first audio track of a
    media file (copied when ``out``'s container takes its codec, else re-encoded, see :data:`COPY_AUDIO`), or
    ``(samples, rate)`` float samples in [-1, 1] (encoded to AAC; Opus in .webm). Packets are interleaved by time, so
    memory stays flat for long videos. Returns what was done, e.g. ``"audio copied (aac)"``."""
    av = av_module()
    ext = os.path.splitext(out)[1].lower()
    with av.open(video, mode="r") as vin, av.open(out, mode="w") as cout:
        vstream = vin.streams.video[0]
        vout = cout.add_stream_from_template(vstream)
        if isinstance(audio, tuple):
            samples, rate = np.asarray(audio[0], dtype=np.float32), int(audio[1])
            aout = cout.add_stream(_encoder_for(ext), rate=rate, layout="mono")
            sources = [_packets(vin, vstream, vout), _encoded(aout, samples, rate)]
            note = f"audio encoded ({aout.codec_context.name}, {len(samples) / rate:.2f} s)"
            return _interleave(cout, sources, note)
        with av.open(os.fspath(audio), mode="r") as ain:
            astream = ain.streams.audio[0]
            name = astream.codec_context.name
            if ext == ".mkv" or name in COPY_AUDIO.get(ext, ()):
                aout = cout.add_stream_from_template(astream)
                sources = [_packets(vin, vstream, vout), _packets(ain, astream, aout)]
                return _interleave(cout, sources, f"audio copied ({name})")
            aout = cout.add_stream(_encoder_for(ext), rate=astream.codec_context.sample_rate or 48000)
            sources = [_packets(vin, vstream, vout), _reencoded(ain, astream, aout)]
            return _interleave(cout, sources, f"audio re-encoded ({name} -> {aout.codec_context.name})")


def _packets(container: Any, stream: Any, out_stream: Any) -> Iterator[Any]:
    for packet in container.demux(stream):
        if packet.dts is None:  # the demuxer's flush packet
            continue
        packet.stream = out_stream
        yield packet


def _encoded(stream: Any, samples: np.ndarray, rate: int) -> Iterator[Any]:
    av = av_module()
    step = rate  # one second per frame handed to the encoder (it cuts its own frame sizes)
    for start in range(0, len(samples), step):
        chunk = samples[start:start + step]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk[None]), format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        yield from stream.encode(frame)
    yield from stream.encode(None)


def _reencoded(container: Any, stream: Any, out_stream: Any) -> Iterator[Any]:
    for frame in container.decode(stream):
        frame.pts = None
        yield from out_stream.encode(frame)
    yield from out_stream.encode(None)


def _interleave(container: Any, sources: list[Iterator[Any]], note: str) -> str:
    """Mux the packets of ``sources`` in time order (each source is in order already)."""
    heads: list[Any] = [next(s, None) for s in sources]

    def when(packet: Any) -> float:
        ts = packet.dts if packet.dts is not None else (packet.pts or 0)
        return float(ts * packet.time_base) if packet.time_base is not None else 0.0

    while any(h is not None for h in heads):
        i = min((k for k, h in enumerate(heads) if h is not None), key=lambda k: when(heads[k]))
        container.mux(heads[i])
        heads[i] = next(sources[i], None)
    return note
