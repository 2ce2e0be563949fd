"""task=reenact (model=x2face): drive one or several source images with a driving video, a sequence of pose codes or
an audio file; write the generated video and a side-by-side video (driver | sources | generated) under
``<run dir>/predictions/``, with a progress bar over the frames, and print the frames per second.

    python run.py task=reenact model=x2face task.ckpt_path=<run>/checkpoints/last.ckpt task.source=<image or folder> \
        task.driving=<video file or folder of frames>        # face driven by a face
    ... task.poses=<csv of pitch,yaw,roll per frame, degrees>    # needs a pose_code (or later) checkpoint
    ... task.audio=<16-bit PCM wav, 16 kHz>                     # needs an audio_code checkpoint

Frames are resized to the model's input size (``dataset.image_size``); sources are averaged by confidence.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image

from datamodules.transforms import read_image
from datamodules.video import FrameSource, VideoWriter, has_audio
from datamodules.x2face.audio import AudioFeatures, read_wav
from tasks.config import ConfigError
from tasks.inference import inference_device, load_for_inference, progress, require_checkpoint

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _images_in(path: str, key: str) -> list[str]:
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise ValueError(f"{key}={path} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{key}={path} does not exist; pass an image file or a folder of images")
    return [path]


def _to_tensor(img: Image.Image | np.ndarray, size: int) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img, dtype=np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1)[None]
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return x


def read_driving_frames(path: str, size: int) -> tuple[list[torch.Tensor], float | None]:
    """Frames of a video file or a folder of images (the shared reader), as [1, 3, size, size]; and the video's frame
    rate (``None`` for a folder: task.fps sets it)."""
    source = FrameSource(path, key="task.driving")
    frames = [_to_tensor(frame, size) for frame in source]
    if not frames:
        raise ValueError(f"the driving video task.driving={path} has no frames; pass a video with frames or a folder "
                         "of frames")
    return frames, None if source.is_folder else float(source.fps)


def read_poses(path: str, num_frames: int | None) -> torch.Tensor:
    """[T, 3] (pitch, yaw, roll) in degrees, one CSV row per frame (a header row is allowed)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"task.poses={path} does not exist; pass a CSV of pitch,yaw,roll rows (degrees)")
    rows = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or row[0].strip().startswith("#"):
                continue
            try:
                values = [float(v) for v in row]
            except ValueError:
                if i == 0:
                    continue  # header
                raise ValueError(f"{path} line {i + 1}: {row} is not three numbers (pitch,yaw,roll)") from None
            if len(values) != 3:
                raise ValueError(f"{path} line {i + 1} has {len(values)} values; each pose is pitch,yaw,roll")
            rows.append(values)
    if not rows:
        raise ValueError(f"{path} has no pose rows; write one pitch,yaw,roll row (degrees) per frame")
    if num_frames is not None and len(rows) != int(num_frames):
        raise ValueError(f"{path} has {len(rows)} poses but task.num_frames={num_frames}: give one pose per "
                         f"frame, or task.num_frames=null")
    return torch.tensor(rows)


class VideoOut:
    """Frames [3, H, W] in [0, 1], kept in memory and encoded on :meth:`close` (so the frames/s figure measures the
    model, not the encoder) through the shared atomic writer (:class:`datamodules.video.VideoWriter`)."""

    def __init__(self, path: str, fps: float, audio: Any = None):
        self.path, self.fps, self.frames, self.audio = path, fps, [], audio
        self.audio_note = "no audio"

    def add(self, frame: torch.Tensor) -> None:
        self.frames.append(frame.mul(255).add(0.5).clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy())

    def close(self) -> str:
        writer = VideoWriter(self.path, self.fps, audio=self.audio)
        try:
            for arr in self.frames:
                writer.write(arr)
            path = writer.close()
            self.audio_note = writer.audio_note
            return path
        except BaseException:
            writer.abort()
            raise


def reenact(cfg: DictConfig) -> dict[str, Any]:

    task = cfg.task
    modes = [k for k in ("driving", "poses", "audio") if task.get(k)]
    if len(modes) != 1:
        raise ConfigError(f"task=reenact needs exactly one driver: task.driving=<video or frames>, "
                          f"task.poses=<csv> or task.audio=<wav> (got {modes or 'none'})")
    mode = modes[0]
    if not task.get("source"):
        raise ConfigError("task=reenact needs task.source=<an image file or a folder of source images>")
    module = load_for_inference(cfg, require_checkpoint(cfg))
    device = inference_device(cfg)
    module.to(device)
    size = int(cfg.dataset.image_size[0])
    module.check_size(torch.zeros(1, 3, size, size))
    files = _images_in(str(task.source), "task.source")[: int(task.max_sources)]
    sources = torch.cat([_to_tensor(read_image(f), size) for f in files]).unsqueeze(0).to(device)  # [1, K, 3, S, S]
    fps = float(task.fps)
    drivers: list[torch.Tensor] = []
    with torch.no_grad():
        embedded, _ = module.net.embed(sources)
        if mode == "driving":
            frames, video_fps = read_driving_frames(str(task.driving), size)
            fps = float(task.fps if task.get("fps_from_task") else (video_fps or task.fps))
            drivers = frames
            vectors = None
        elif mode == "poses":
            poses = read_poses(str(task.poses), task.get("num_frames")).to(device)
            vectors = module.vector_for_pose(sources[:, 0].expand(len(poses), -1, -1, -1), poses)
        else:
            samples, rate = read_wav(str(task.audio))
            feats = AudioFeatures(window_s=float(cfg.dataset.get("audio_window_s", 0.2)))
            n = int(len(samples) / rate * fps)
            if n < 1:
                raise ValueError(f"task.audio={task.audio} is too short: {len(samples) / rate:.3f} s gives no frame "
                                 f"at {fps:g} fps; pass at least {1 / fps:.2f} s of audio")
            audio = torch.stack([feats.at_frame(samples, rate, t, fps, source=str(task.audio)) for t in range(n)])
            silent = feats.of_window(torch.zeros(feats.window_samples))  # the source frame's audio: silence
            audio = audio.to(device)
            vectors = module.vector_for_audio(sources[:, 0].expand(n, -1, -1, -1), audio,
                                              silent.to(device).expand(n, -1))
    out_dir = str(cfg.paths.prediction_dir)
    # the outputs carry the driver's sound: the WAV of an audio-driven run, the driving video's own audio track
    audio = None
    if bool(task.get("keep_audio", True)):
        if mode == "audio":
            audio = (samples, rate)
        elif mode == "driving" and has_audio(str(task.driving)):
            audio = str(task.driving)
    generated_video = VideoOut(os.path.join(out_dir, "reenacted.mp4"), fps, audio)
    side_video = VideoOut(os.path.join(out_dir, "side_by_side.mp4"), fps, audio)
    n = len(drivers) if mode == "driving" else len(vectors)
    start = time.perf_counter()
    with torch.no_grad():
        for t in progress(range(n), f"reenact ({mode})", unit="frame"):
            if mode == "driving":
                flow = module.net.driving(drivers[t].to(device))[0]
            else:
                flow = module.net.driving.flow_from_vector(vectors[t: t + 1])
            frame = module.net.drive(embedded, flow).clamp(0, 1)[0]
            generated_video.add(frame)
            left = drivers[t][0].to(device) if mode == "driving" else sources[0, 0]
            side_video.add(torch.cat([left, *sources[0], frame], dim=2))
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    paths = [generated_video.close(), side_video.close()]
    result = {"mode": mode, "frames": n, "fps": n / max(elapsed, 1e-9), "videos": paths, "sources": len(files)}
    print(f"\ncondsynth: reenacted {n} frames ({mode}, {len(files)} source frame(s), {size}x{size}) at "
          f"{result['fps']:.1f} frames/s; {generated_video.audio_note}")
    for p in paths:
        print(f"  {p}")
    return result
