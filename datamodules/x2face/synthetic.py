"""Procedural talking faces for X2Face, generated on the fly and deterministic by seed.

A face is a textured head sphere seen through an ellipse (identity: its width/height), so a head pose rotates the
texture in 3-D: every pixel of the head is mapped back to the head's own frame by the inverse rotation
(pitch about x, yaw about y, roll about the view axis) and painted there (skin shaded by the camera-facing normal,
hair cap, eyebrows, eyes with irises that blink, nose, lips and an open mouth). Identity attributes: skin, hair,
iris and background colours, head shape, eye spacing and size, nose length, mouth width, hair line, voice pitch.

A video of an identity: smooth pose trajectories (sums of sinusoids: yaw within +-35 degrees, pitch and roll within
+-20), blinks, and speech: syllables are bumps of a loudness envelope; the mouth opening is that envelope, and the
audio track is a harmonic voice (the identity's pitch) whose amplitude is the envelope, plus a little noise. So the
audio's content drives the mouth and is independent of the pose.

``FaceVideos`` is the interface the datamodule reads (the folder layout implements the same one): identities,
videos per identity, frames per video, and per frame the image, its pose (pitch, yaw, roll; degrees) and the audio
features of a 0.2 s window centred on it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.x2face.audio import AudioFeatures

FPS = 25.0
SAMPLE_RATE = 16000


def _rng(seed: int, *keys: object) -> np.random.Generator:
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(k).encode()) for k in keys])


@dataclass(frozen=True)
class Identity:
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    background: tuple[float, float, float]
    width: float
    height: float
    eye_x: float
    eye_size: float
    nose: float
    mouth: float
    hairline: float
    pitch_hz: float


def make_identity(seed: int, identity: int) -> Identity:
    r = _rng(seed, "identity", identity)
    skin_tone = r.uniform(0.25, 0.95)
    skin = (min(1.0, skin_tone * 1.05 + 0.05), skin_tone * r.uniform(0.7, 0.85), skin_tone * r.uniform(0.5, 0.7))
    return Identity(
        skin=tuple(float(c) for c in skin),
        hair=tuple(float(c) for c in r.uniform(0.0, 0.6, 3) * r.uniform(0.3, 1.0)),
        iris=tuple(float(c) for c in r.uniform(0.05, 0.8, 3)),
        background=tuple(float(c) for c in r.uniform(0.1, 0.9, 3)),
        width=float(r.uniform(0.52, 0.68)), height=float(r.uniform(0.68, 0.84)),
        eye_x=float(r.uniform(0.28, 0.4)), eye_size=float(r.uniform(0.1, 0.16)),
        nose=float(r.uniform(0.08, 0.16)), mouth=float(r.uniform(0.2, 0.34)),
        hairline=float(r.uniform(-0.62, -0.42)), pitch_hz=float(r.uniform(110.0, 260.0)),
    )


@dataclass(frozen=True)
class Video:
    """Per-frame pose (degrees: pitch, yaw, roll), mouth opening and eye opening in [0, 1], and the audio track."""

    pose: np.ndarray      # [T, 3]
    mouth: np.ndarray     # [T]
    eyes: np.ndarray      # [T]
    audio: np.ndarray     # [T / FPS * SAMPLE_RATE] float32
    background_gain: float


def make_video(seed: int, identity: Identity, identity_id: int, video: int, frames: int) -> Video:
    r = _rng(seed, "video", identity_id, video)
    t = np.arange(frames) / FPS
    limits = np.array([20.0, 35.0, 20.0])
    pose = np.zeros((frames, 3))
    for d in range(3):
        for _ in range(2):
            amp, freq, phase = r.uniform(0.15, 0.5), r.uniform(0.05, 0.4), r.uniform(0, 2 * np.pi)
            pose[:, d] += amp * np.sin(2 * np.pi * freq * t + phase)
        pose[:, d] += r.uniform(-0.3, 0.3)
    pose = np.clip(pose, -1, 1) * limits
    # speech: syllables every ~0.25 s with pauses; envelope at audio rate, mouth = envelope at frame times
    n = int(round(frames / FPS * SAMPLE_RATE))
    ta = np.arange(n) / SAMPLE_RATE
    env = np.zeros(n)
    s = r.uniform(0.0, 0.2)
    while s < ta[-1] + 0.2 if n else False:
        length, loud = r.uniform(0.12, 0.3), r.uniform(0.4, 1.0)
        if r.random() < 0.8:
            env += loud * np.exp(-0.5 * ((ta - s - length / 2) / (length / 4)) ** 2)
        s += length + r.uniform(0.02, 0.25)
    env = np.clip(env, 0, 1)
    voice = sum(np.sin(2 * np.pi * identity.pitch_hz * h * ta + r.uniform(0, 2 * np.pi)) / h for h in range(1, 6))
    audio = (0.3 * env * voice / 2.3 + 0.01 * r.standard_normal(n)).astype(np.float32)
    mouth = env[np.clip((t * SAMPLE_RATE).astype(int), 0, max(n - 1, 0))] if n else np.zeros(frames)
    eyes = np.ones(frames)
    for b in r.uniform(0, t[-1] if frames else 0, size=max(1, frames // 60)):
        eyes = np.minimum(eyes, np.clip(np.abs(t - b) / 0.08, 0, 1))
    return Video(pose=pose.astype(np.float32), mouth=mouth.astype(np.float32), eyes=eyes.astype(np.float32),
                 audio=audio, background_gain=float(r.uniform(0.85, 1.15)))


def _rotation(pitch: float, yaw: float, roll: float) -> torch.Tensor:
    """Camera-from-head rotation: roll (view axis) @ pitch (x) @ yaw (y); angles in degrees."""
    p, y, r = (math.radians(a) for a in (pitch, yaw, roll))
    rx = torch.tensor([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = torch.tensor([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = torch.tensor([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _ellipse(x: torch.Tensor, y: torch.Tensor, cx: float, cy: float, rx: float, ry: float) -> torch.Tensor:
    return ((x - cx) / max(rx, 1e-4)) ** 2 + ((y - cy) / max(ry, 1e-4)) ** 2 < 1


def render_face(ident: Identity, pose: tuple[float, float, float], mouth: float, eyes: float, size: int,
                background_gain: float = 1.0, supersample: int = 2) -> torch.Tensor:
    """One frame [3, size, size] in [0, 1]."""
    s = size * supersample
    lin = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
    v, u = torch.meshgrid(lin, lin, indexing="ij")  # u right, v down, in [-1, 1]
    bg = torch.tensor(ident.background).view(3, 1, 1) * background_gain * (0.85 + 0.15 * (1 - v) / 2)
    img = bg.expand(3, s, s).clone()
    xs, ys = u / ident.width, (v - 0.05) / ident.height
    r2 = xs ** 2 + ys ** 2
    inside = r2 < 1
    zs = torch.sqrt((1 - r2).clamp(min=0))
    cam = torch.stack([xs, ys, zs], 0).reshape(3, -1)
    head = (_rotation(*pose).T @ cam).reshape(3, s, s)  # camera -> head frame
    hx, hy, hz = head[0], head[1], head[2]
    shade = (0.55 + 0.45 * zs).unsqueeze(0)
    skin = torch.tensor(ident.skin).view(3, 1, 1)
    hair_c = torch.tensor(ident.hair).view(3, 1, 1)
    face = skin.expand(3, s, s).clone()
    front = hz > 0.1

    def paint(mask: torch.Tensor, colour) -> None:
        c = torch.as_tensor(colour, dtype=torch.float32).reshape(3, 1, 1)
        face[:] = torch.where(mask.unsqueeze(0), c.expand(3, s, s), face)

    paint(front & _ellipse(hx, hy, 0, ident.nose * 0.6, 0.07, ident.nose), skin.flatten() * 0.8)
    lip = (0.75, 0.25, 0.3)
    mo = 0.03 + 0.13 * float(mouth)
    paint(front & _ellipse(hx, hy, 0, 0.42, ident.mouth, mo + 0.03), lip)
    if mouth > 0.05:
        paint(front & _ellipse(hx, hy, 0, 0.42, ident.mouth * 0.8, mo * 0.8), (0.15, 0.02, 0.05))
    for side in (-1, 1):
        ex = side * ident.eye_x
        paint(front & _ellipse(hx, hy, ex, -0.33, ident.eye_size * 1.1, 0.03), hair_c.flatten() * 0.7)
        open_h = ident.eye_size * 0.55 * float(eyes)
        if open_h > 0.01:
            paint(front & _ellipse(hx, hy, ex, -0.15, ident.eye_size, open_h), (0.95, 0.95, 0.95))
            paint(front & _ellipse(hx, hy, ex, -0.15, ident.eye_size * 0.45, min(open_h, ident.eye_size * 0.45)),
                  ident.iris)
            paint(front & _ellipse(hx, hy, ex, -0.15, ident.eye_size * 0.18, min(open_h, ident.eye_size * 0.18)),
                  (0.02, 0.02, 0.02))
        else:
            paint(front & _ellipse(hx, hy, ex, -0.15, ident.eye_size, 0.012), skin.flatten() * 0.6)
    hair = (hy < ident.hairline) | (hz < -0.15)
    face = torch.where(hair.unsqueeze(0), hair_c.expand(3, s, s), face) * shade
    img = torch.where(inside.unsqueeze(0), face, img).clamp(0, 1)
    if supersample > 1:
        img = F.avg_pool2d(img.unsqueeze(0), supersample).squeeze(0)
    return img


class SyntheticFaceVideos:
    """Identities ``first_identity .. first_identity + num_identities - 1``, ``videos_per_identity`` videos of
    ``frames_per_video`` frames each; frames rendered at ``image_size`` (square; 2x supersampled up to 32 px)."""

    def __init__(self, seed: int, first_identity: int, num_identities: int, videos_per_identity: int,
                 frames_per_video: int, image_size: int, first_video: int = 0,
                 audio: AudioFeatures | None = None, cache_mb: float = 512.0):
        self.seed, self.first_identity = int(seed), int(first_identity)
        self.num_identities, self.videos_per_identity = int(num_identities), int(videos_per_identity)
        self.frames_per_video, self.image_size, self.first_video = int(frames_per_video), int(image_size), first_video
        self.audio = audio or AudioFeatures()
        # rendered frames are kept (up to cache_mb) since pairs revisit them every epoch
        self._frames: dict[tuple[int, int, int], torch.Tensor] = {}
        self._cache_frames = int(cache_mb * 2 ** 20 // (3 * 4 * self.image_size ** 2))

    def identities(self) -> list[int]:
        return list(range(self.first_identity, self.first_identity + self.num_identities))

    def videos(self, identity: int) -> list[int]:
        return list(range(self.first_video, self.first_video + self.videos_per_identity))

    def num_frames(self, identity: int, video: int) -> int:
        return self.frames_per_video

    @lru_cache(maxsize=256)  # noqa: B019 - a few hundred small records, one per (identity, video)
    def video(self, identity: int, video: int) -> tuple[Identity, Video]:
        ident = make_identity(self.seed, identity)
        return ident, make_video(self.seed, ident, identity, video, self.frames_per_video)

    def frame(self, identity: int, video: int, t: int) -> torch.Tensor:
        key = (identity, video, t)
        if key in self._frames:
            return self._frames[key]
        ident, vid = self.video(identity, video)
        img = render_face(ident, tuple(float(a) for a in vid.pose[t]), float(vid.mouth[t]), float(vid.eyes[t]),
                          self.image_size, vid.background_gain, supersample=2 if self.image_size <= 32 else 1)
        if len(self._frames) < self._cache_frames:
            self._frames[key] = img
        return img

    def pose(self, identity: int, video: int, t: int) -> torch.Tensor:
        """(pitch, yaw, roll) in degrees."""
        return torch.from_numpy(self.video(identity, video)[1].pose[t].copy())

    def mouth(self, identity: int, video: int, t: int) -> float:
        return float(self.video(identity, video)[1].mouth[t])

    def audio_features(self, identity: int, video: int, t: int) -> torch.Tensor:
        return self.audio.at_frame(self.video(identity, video)[1].audio, SAMPLE_RATE, t, FPS)
