"""task=stylize_video: Linear Style Transfer on a video, frame by frame, with the style code computed once.

    python run.py task=stylize_video model=lst task.ckpt_path=<transform run>/checkpoints/last.ckpt \
        task.input=clip.mp4 task.style=painting.jpg                 # -> <run dir>/predictions/clip_stylized.mp4
    python run.py task=stylize_video model=lst task.ckpt_path=... task.input=frames/ task.fps=24 task.style=...

* ``task.input``: a video file (anything FFmpeg decodes) or a folder of frames (images, natural sort order:
  ``frame_2`` before ``frame_10``); ``task.fps`` sets a folder's frame rate (default 25) and, when given,
  overrides a video's own rate.
* ``task.style``: one style image (or several with ``task.style_weights`` to mix them). The style code
  (``T_s``, style mean) is computed ONCE; every frame reuses it, so a frame costs one encode, one matrix product
  and one decode (the paper's "linear transformation is fast enough for real-time video").
* ``task.alpha``, ``task.short_side``, ``task.photoreal`` / ``task.guided_filter``: as in task=stylize.
* ``task.output``: the video path (default ``<paths.prediction_dir>/<input stem>_stylized.mp4``); the container
  follows its extension (.mp4, .mkv, .mov, .avi). ``task.codec``: ``auto`` (libx264 when available, else mpeg4)
  or any FFmpeg encoder name; ``task.crf`` = libx264 quality (lower = better; 18 is visually near-lossless).
  H.264 in yuv420p needs even sizes: an odd width/height is padded by one replicated pixel (with a warning).
* ``task.save_frames``: also write each stylised frame as ``<output stem>_frames/<index>.png``.

Frames are streamed (decode -> stylise -> encode), so long videos do not fill memory. The task prints and returns
the frames per second of the stylisation loop (model time only, device-synchronised) and end to end (with decoding
and encoding). Video I/O uses PyAV (``av``), whose wheels bundle FFmpeg: no system ffmpeg is needed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from datamodules.image_grids import save_grid
from datamodules.video import FrameSource, VideoWriter, has_audio
from tasks.inference import inference_device, progress
from tasks.lst.stylize import (
    check_alpha,
    check_short_side,
    check_working_size,
    gather_images,
    load_stylizer,
    min_image_side,
    parse_style_weights,
    photoreal_args,
    read_image,
    style_codes,
    stylize_one,
    task_value,
    working_side,
)

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------- conversion
def to_tensor(frame: np.ndarray, short_side: int | None = None) -> torch.Tensor:
    """RGB uint8 [H, W, 3] -> [1, 3, H', W'] in [0, 1], shorter side resized to ``short_side`` (bicubic)."""
    if short_side is not None:
        img = Image.fromarray(frame)
        w, h = img.size
        if min(w, h) != short_side:
            s = short_side / min(w, h)
            img = img.resize((max(short_side, round(w * s)), max(short_side, round(h * s))), Image.BICUBIC)
        frame = np.array(img)  # a writable copy (torch.from_numpy warns on a read-only view)
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div(255.0).unsqueeze(0)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] or [3, H, W] in [0, 1] -> RGB uint8 [H, W, 3] (rounded as torchvision's save_image does)."""
    img = image[0] if image.dim() == 4 else image
    return img.detach().float().mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


# ------------------------------------------------------------------------------------------- task
def stylize_video(cfg: DictConfig) -> dict[str, Any]:
    """Stylise every frame of ``task.input`` with one style code; write ``task.output``; return the frame rate."""
    working_size, max_pixels = check_working_size(cfg)
    source = FrameSource(task_value(cfg, "input", "a video file or a folder of frames"), cfg.task.get("fps"),
                         max_pixels=max_pixels)
    style_files = gather_images(task_value(cfg, "style", "a style image"), "task.style")
    weights = parse_style_weights(cfg.task.get("style_weights"), len(style_files))
    if weights is None and len(style_files) > 1:
        raise ValueError(
            f"task.style={cfg.task.style} holds {len(style_files)} images; a video takes one style: pass one image, "
            f"or task.style_weights=[...] (one weight per image) to mix them"
        )
    alpha = check_alpha(cfg.task.get("alpha", 1.0))
    short_side = check_short_side(cfg.task.get("short_side"))
    photoreal = photoreal_args(cfg)
    output = cfg.task.get("output") or os.path.join(str(cfg.paths.prediction_dir), f"{source.name}_stylized.mp4")
    output = os.fspath(str(output))
    if os.path.abspath(output) == os.path.abspath(source.path):
        raise ValueError(f"task.output={output} is the input video; choose another path")
    frames_dir = os.path.splitext(output)[0] + "_frames" if bool(cfg.task.get("save_frames", False)) else None
    min_side = min_image_side(str(cfg.model.get("level", "r41")))
    audio = source.path if bool(cfg.task.get("audio", True)) and has_audio(source.path) else None
    writer = VideoWriter(output, source.fps, str(cfg.task.get("codec", "auto")), cfg.task.get("crf", 18),
                         odd_size=str(cfg.task.get("odd_size", "keep")), audio=audio)

    device = inference_device(cfg)
    stylizer = load_stylizer(cfg, device)
    styles = [read_image(p, short_side, min_side, working_size, max_pixels).to(device) for p in style_files]
    code = style_codes(stylizer, styles, weights)[0]  # computed once for the whole video
    sync = _sync(device)

    n = 0
    model_time = 0.0
    size = None
    side = short_side
    start = time.perf_counter()
    try:
        for arr in progress(source, "stylize_video", unit="frame"):
            if size is None:
                side = working_side(arr.shape[:2], short_side, working_size)
                if side is not None and short_side is None:
                    log.info("frames of %s are %dx%d: shrunk to a shorter side of %d (task.working_size; null keeps "
                             "the full size)", source.path, arr.shape[1], arr.shape[0], side)
            content = to_tensor(arr, side)
            if size is None:
                size = tuple(content.shape[-2:])
                if min(size) < min_side:
                    raise ValueError(f"frames of {source.path} are {size[0]}x{size[1]}; the model needs at least "
                                     f"{min_side} pixels on each side: set task.short_side={min_side} or larger")
            sync()
            t0 = time.perf_counter()
            out = stylize_one(stylizer, content.to(device), code, alpha, photoreal).cpu()
            sync()
            model_time += time.perf_counter() - t0
            writer.write(to_uint8(out))
            if frames_dir is not None:
                save_grid(out[0], os.path.join(frames_dir, f"{n:06d}.png"))
            n += 1
        if n == 0:
            raise ValueError(f"task.input={source.path} has no frames")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    total = time.perf_counter() - start
    fps = n / model_time if model_time > 0 else float("inf")
    fps_total = n / total if total > 0 else float("inf")
    written = writer.size or size
    print(f"\ncondsynth: {n} frames stylised at {fps:.2f} frames/s (model, {device.type}; {fps_total:.2f} frames/s "
          f"with decoding and encoding), style code computed once -> {output}: {written[1]}x{written[0]} (width x "
          f"height, {writer.pix_fmt}), {float(source.fps):g} frames/s, {writer.audio_note}"
          + (f"; frames in {frames_dir}" if frames_dir else ""))
    return {"output": output, "frames": n, "fps": fps, "fps_end_to_end": fps_total, "size": size,
            "written_size": written, "audio": writer.audio_note, "video_fps": float(source.fps),
            "frames_dir": frames_dir, "device": device.type}
