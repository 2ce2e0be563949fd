"""A synthetic dancer for Everybody Dance Now, deterministic by seed: an articulated figure (BODY_25 skeleton)
with clothes (shirt, sleeves, trousers, shoes) and a face (skin, hair, eyes, mouth), animated by a procedural
dance (arm and leg swings, knee bends, a sway, and steps towards and away from the camera), rendered to frames
with their exact keypoints. Two subjects: ``target`` (the one a model learns) and ``source`` (other proportions,
other clothes, standing farther from the camera), so that pose normalisation matters.

Everything is in pixels of the requested frame size; the figure is ~80% of the frame height when closest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datamodules.edn.keypoints import FramePose
from datamodules.edn.render import _dot, _limb


@dataclass(frozen=True)
class Subject:
    """Proportions (fractions of the figure height), clothes and the range of distances of one dancer."""

    torso: float = 0.30
    head: float = 0.11
    shoulder: float = 0.11
    hip: float = 0.065
    upper_arm: float = 0.17
    forearm: float = 0.15
    thigh: float = 0.24
    shin: float = 0.23
    size_close: float = 0.82      # figure height / frame height at the closest position
    ground_close: float = 0.95    # ankle y / frame height at the closest position
    ground_far: float = 0.80      # ... at the farthest
    depth_shrink: float = 0.30    # the figure is this much smaller at the farthest position
    shirt: tuple[int, int, int] = (200, 40, 40)
    trousers: tuple[int, int, int] = (40, 50, 120)
    skin: tuple[int, int, int] = (230, 185, 150)
    hair: tuple[int, int, int] = (60, 40, 20)
    wall: tuple[int, int, int] = (215, 215, 200)
    floor: tuple[int, int, int] = (150, 120, 90)


SUBJECTS = {
    "target": Subject(),
    "source": Subject(torso=0.27, head=0.12, shoulder=0.10, upper_arm=0.16, forearm=0.14, thigh=0.27, shin=0.25,
                      size_close=0.62, ground_close=0.85, ground_far=0.68, depth_shrink=0.25,
                      shirt=(40, 150, 60), trousers=(30, 30, 30), skin=(170, 120, 90), hair=(20, 20, 20),
                      wall=(190, 200, 220), floor=(110, 110, 120)),
}


class DanceMotion:
    """Joint angles over time: a sum of seeded sinusoids per degree of freedom (frame index ``t``)."""

    DOFS = ("r_shoulder", "r_elbow", "l_shoulder", "l_elbow", "r_hip", "r_knee", "l_hip", "l_knee", "lean",
            "sway", "depth")

    def __init__(self, seed: int, speed: float = 1.0) -> None:
        rng = np.random.default_rng(seed)
        self.freq = rng.uniform(0.04, 0.12, (len(self.DOFS), 2)) * speed
        self.phase = rng.uniform(0, 2 * np.pi, (len(self.DOFS), 2))
        self.freq[-1] *= 0.25  # slow steps towards and away from the camera

    def __call__(self, t: float) -> dict[str, float]:
        w = 0.5 + 0.25 * np.sin(2 * np.pi * self.freq[:, 0] * t + self.phase[:, 0]) \
            + 0.25 * np.sin(2 * np.pi * self.freq[:, 1] * t + self.phase[:, 1])  # in [0, 1]
        d = dict(zip(self.DOFS, w, strict=True))
        return {
            "r_shoulder": 0.2 + 2.4 * d["r_shoulder"], "r_elbow": 1.6 * d["r_elbow"],
            "l_shoulder": 0.2 + 2.4 * d["l_shoulder"], "l_elbow": 1.6 * d["l_elbow"],
            "r_hip": 0.05 + 0.6 * d["r_hip"], "r_knee": 1.0 * d["r_knee"],
            "l_hip": 0.05 + 0.6 * d["l_hip"], "l_knee": 1.0 * d["l_knee"],
            "lean": 0.3 * (d["lean"] - 0.5), "sway": d["sway"] - 0.5, "depth": d["depth"],
        }


def _dir(angle: float, side: float) -> np.ndarray:
    """Unit vector ``angle`` radians from straight down, opening outward on ``side`` (-1: image left)."""
    return np.array([side * np.sin(angle), np.cos(angle)])


def dance_pose(subject: Subject, angles: dict[str, float], height: int, width: int) -> FramePose:
    """BODY_25 keypoints (confidence 1; small toes too) of ``subject`` in pose ``angles`` on an H x W frame."""
    s_ = subject
    depth = angles["depth"]
    size = s_.size_close * height * (1 - s_.depth_shrink * depth)
    ground = height * (s_.ground_close + (s_.ground_far - s_.ground_close) * depth)
    cx = width / 2 + angles["sway"] * 0.25 * width * (1 - s_.depth_shrink * depth)
    j = np.zeros((25, 3))
    hip = np.array([cx, 0.0])
    up = np.array([np.sin(angles["lean"]), -np.cos(angles["lean"])])
    side = np.array([-up[1], up[0]])  # points to image right
    neck = hip + up * s_.torso * size
    j[8, :2], j[1, :2] = hip, neck
    j[0, :2] = neck + up * s_.head * size
    j[15, :2] = j[0, :2] + (up * 0.03 - side * 0.025) * size
    j[16, :2] = j[0, :2] + (up * 0.03 + side * 0.025) * size
    j[17, :2] = j[0, :2] + (up * 0.01 - side * 0.05) * size
    j[18, :2] = j[0, :2] + (up * 0.01 + side * 0.05) * size
    for sgn, (sh, el, wr), (ang_s, ang_e) in ((-1, (2, 3, 4), ("r_shoulder", "r_elbow")),
                                              (1, (5, 6, 7), ("l_shoulder", "l_elbow"))):
        j[sh, :2] = neck + sgn * side * s_.shoulder * size
        j[el, :2] = j[sh, :2] + _dir(angles[ang_s], sgn) * s_.upper_arm * size
        j[wr, :2] = j[el, :2] + _dir(angles[ang_s] + angles[ang_e], sgn) * s_.forearm * size
    for sgn, (hp, kn, an), (ang_h, ang_k), (big, small, heel) in (
            (-1, (9, 10, 11), ("r_hip", "r_knee"), (22, 23, 24)), (1, (12, 13, 14), ("l_hip", "l_knee"), (19, 20, 21))):
        j[hp, :2] = hip + sgn * side * s_.hip * size
        j[kn, :2] = j[hp, :2] + _dir(angles[ang_h], sgn) * s_.thigh * size
        j[an, :2] = j[kn, :2] + _dir(angles[ang_h] - angles[ang_k], sgn) * s_.shin * size
        foot = 0.05 * size
        j[big, :2] = j[an, :2] + np.array([sgn * foot, 0.25 * foot])
        j[small, :2] = j[an, :2] + np.array([sgn * 0.7 * foot, 0.3 * foot])
        j[heel, :2] = j[an, :2] + np.array([-sgn * 0.2 * foot, 0.3 * foot])
    j[:, 1] += ground - max(j[11, 1], j[14, 1])  # the lower ankle stands on the ground
    j[:, 2] = 1.0
    return FramePose(j)


def render_photo(subject: Subject, pose: FramePose, height: int, width: int) -> np.ndarray:
    """The "photo" of ``subject`` in ``pose``: wall and floor, trousers, shoes, shirt, sleeves, skin, head with
    hair, eyes and mouth. RGB uint8 [H, W, 3]."""
    b = pose.body[:, :2]
    size = float(np.hypot(*(b[0] - (b[11] + b[14]) / 2)))
    img = np.empty((height, width, 3), np.float32)
    horizon = int(height * 0.62)
    img[:horizon] = subject.wall
    img[horizon:] = subject.floor
    c = {k: np.asarray(getattr(subject, k), np.float32) for k in ("shirt", "trousers", "skin", "hair")}
    dark = np.array([25, 20, 20], np.float32)
    for hp, kn, an, toe in ((9, 10, 11, 22), (12, 13, 14, 19)):
        _limb(img, b[hp], b[kn], 0.05 * size, c["trousers"], 1.0)
        _limb(img, b[kn], b[an], 0.042 * size, c["trousers"], 1.0)
        _limb(img, b[an], b[toe], 0.025 * size, dark, 1.0)
    _limb(img, b[9], b[12], 0.06 * size, c["trousers"], 1.0)
    _limb(img, b[1], b[8], 0.1 * size, c["shirt"], 1.0)
    _limb(img, b[2], b[5], 0.05 * size, c["shirt"], 1.0)
    for sh, el, wr in ((2, 3, 4), (5, 6, 7)):
        _limb(img, b[sh], b[el], 0.035 * size, c["shirt"], 1.0)
        _limb(img, b[el], b[wr], 0.028 * size, c["skin"], 1.0)
        _dot(img, *b[wr], 0.03 * size, c["skin"])
    _limb(img, b[1], b[0], 0.03 * size, c["skin"], 1.0)
    head = b[0] + (b[0] - b[1]) * 0.05
    _dot(img, *(head + (b[0] - b[1]) * 0.25), 0.075 * size, c["hair"])
    _dot(img, *head, 0.07 * size, c["skin"])
    for eye in (15, 16):
        _dot(img, *b[eye], 0.012 * size, dark)
    _limb(img, b[0] - (b[0] - b[1]) * 0.25 - np.array([0.02 * size, 0]),
          b[0] - (b[0] - b[1]) * 0.25 + np.array([0.02 * size, 0]), 0.007 * size, np.array([150, 40, 40], np.float32), 1.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def dance_sequence(subject: str, num_frames: int, height: int, width: int, seed: int = 0,
                   start: int = 0) -> list[FramePose]:
    """``num_frames`` consecutive poses of ``subject`` (``target`` or ``source``) dancing the seeded dance."""
    if subject not in SUBJECTS:
        raise ValueError(f"synthetic subject {subject!r} is unknown; use one of {sorted(SUBJECTS)}")
    motion = DanceMotion(seed)
    return [dance_pose(SUBJECTS[subject], motion(start + t), height, width) for t in range(num_frames)]
