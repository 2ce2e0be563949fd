"""Pose normalisation between a source and a target subject (Everybody Dance Now, paper §3.1; official
``data_prep/graph_posenorm.py``).

Per video, from the frames that show the head and both ankles (:func:`~datamodules.edn.keypoints.pose_stats`;
the ankle y of a frame is its lower ankle's, the larger y):

1. ``close`` = the largest ankle y (nearest the camera); ``median`` = the median ankle y; ``far`` = the ankle y
   farthest above the median among those less than ``far_fraction * (close - median)`` above it (official
   ``--target_median_frac`` / ``--source_median_frac``, default 0.5; the median when no frame qualifies, where the
   official script would stop with an error).
2. When the source's range ``close - far`` is shorter than the target's, the target's two positions are moved to
   the target's middle +- half the source's range (official "small range").
3. Heights: the tallest frame whose ankle y lies within ``window_fraction * (close - far)`` of ``close`` (resp.
   ``far``) (official ``get_minmax_scales(..., 0.05)``); the nearest frame when that window is empty (the official
   script would divide by zero). When the tallest frame of the video is more than ``reset_fraction`` (official 0.1)
   taller than the close height, its height is the close height.
4. ``scale_close`` = target close height / source close height, ``scale_far`` likewise.
5. Each source frame with ankle y ``a``: ``p = (a - far_s) / (close_s - far_s)``, scale
   ``s = scale_far + p (scale_close - scale_far)``, target ankle ``t = far_t + p (close_t - far_t)``
   (official ``calculate_translation``). The frame's points move by ``y' = s (y - y0) + y0 + (t - a)`` and
   ``x' = s (x - x_s) + x_t``: ``anchor="first_frame"`` (official) scales about ``y0`` = the first usable source
   frame's lower ankle and the frame centre (``x_s``, ``x_t`` = half the source and target widths; the official
   script assumes equal frame sizes, where this is its ``x = W // 2``). ``anchor="ankle"`` scales about each
   frame's own ankle (``y0 = a``), so every ankle lands exactly on ``t``.

Not taken from the official script: it samples at most 5000 target and 20000 source frames at random (we use every
frame), and its "tallest frame" for the reset rule compares lists of heights (we take the tallest height).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datamodules.edn.keypoints import FramePose, KeypointError, pose_stats

ANCHORS = ("first_frame", "ankle")


@dataclass
class AnkleRange:
    """One video's ankle track: the close and far positions (y, pixels) and its median."""

    close: float
    far: float
    median: float

    @property
    def span(self) -> float:
        return self.close - self.far


def ankle_range(ankles: np.ndarray, far_fraction: float = 0.5) -> AnkleRange:
    """Step 1 of the module docstring: close (max ankle y), far (the farthest above the median within
    ``far_fraction * (close - median)``) and the median."""
    ankles = np.asarray(ankles, np.float64)
    if len(ankles) == 0:
        raise KeypointError("no frame has both ankles and the head detected: the pose normalisation has nothing "
                            "to measure")
    close, median = float(ankles.max()), float(np.median(ankles))
    above = median - ankles  # > 0: above (farther than) the median
    ok = (above > 0) & (above < far_fraction * (close - median))
    far = float(median - above[ok].max()) if ok.any() else median
    return AnkleRange(close, far, median)


def fit_small_range(source: AnkleRange, target: AnkleRange) -> AnkleRange:
    """Step 2: the target's positions, moved to its middle +- half the source's span when the source's span is
    shorter (official "small range"); unchanged otherwise."""
    if source.span >= target.span:
        return target
    middle, half = (target.close + target.far) / 2, source.span / 2
    return AnkleRange(middle + half, middle - half, target.median)


def heights_at(heights: np.ndarray, ankles: np.ndarray, positions: AnkleRange, window_fraction: float = 0.05,
               reset_fraction: float = 0.1) -> tuple[float, float]:
    """Step 3: (height at close, height at far) of one video."""
    heights, ankles = np.asarray(heights, np.float64), np.asarray(ankles, np.float64)
    window = window_fraction * positions.span

    def tallest_near(y: float) -> float:
        dist = np.abs(ankles - y)
        return float(heights[dist <= max(window, dist.min())].max())

    h_close, h_far = tallest_near(positions.close), tallest_near(positions.far)
    if heights.max() - h_close > reset_fraction * heights.max():
        h_close = float(heights.max())
    return h_close, h_far


@dataclass
class SubjectStats:
    """One video's close and far ankle positions (y) and the subject's height at each (pixels)."""

    close: float
    far: float
    height_close: float
    height_far: float


@dataclass
class Normalisation:
    """Maps source poses into the target's framing (module docstring, step 5)."""

    source: SubjectStats
    target: SubjectStats
    anchor_x: tuple[float, float] = (0.0, 0.0)   # (source x, target x): the scaling centre and where it goes
    anchor_y: float | None = None                 # y0 of anchor="first_frame"; None = each frame's own ankle

    @property
    def scale_close(self) -> float:
        return self.target.height_close / self.source.height_close

    @property
    def scale_far(self) -> float:
        return self.target.height_far / self.source.height_far

    def frame_transform(self, ankle_y: float) -> tuple[float, float]:
        """(scale, target ankle y) of a source frame whose ankle y is ``ankle_y`` (official
        ``calculate_translation``); a source with a single ankle position uses the close values."""
        s, t = self.source, self.target
        p = (ankle_y - s.far) / (s.close - s.far) if s.close != s.far else 1.0
        return self.scale_far + p * (self.scale_close - self.scale_far), t.far + p * (t.close - t.far)

    def apply(self, pose: FramePose, ankle_y: float | None = None) -> tuple[FramePose, float, float]:
        """(normalised pose, its scale, its translation ``t - a``). A frame without head and ankles uses
        ``ankle_y`` (the previous frame's; official ``lastdiff``/``lastscale``)."""
        stats = pose_stats(pose.body)
        a = stats[1] if stats is not None else ankle_y
        if a is None:
            raise KeypointError("a frame has no ankles and no previous frame to borrow them from")
        scale, t = self.frame_transform(a)
        y0 = a if self.anchor_y is None else self.anchor_y
        ax_s, ax_t = self.anchor_x
        offset = (ax_t - scale * ax_s, y0 - scale * y0 + (t - a))
        return pose.transformed(scale, offset), scale, t - a


def _track(poses: list[FramePose | None], which: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [s for p in poses if p is not None and (s := pose_stats(p.body)) is not None]
    if not rows:
        raise KeypointError(f"no {which} frame has the head and both ankles detected; the normalisation needs "
                            "full-body frames (check the keypoints, or pass task.normalize=false)")
    heights, ankles = np.array(rows).T
    return heights, ankles


def fit_normalisation(source: list[FramePose | None], target: list[FramePose | None], source_width: float,
                      target_width: float, far_fraction: float = 0.5, window_fraction: float = 0.05,
                      reset_fraction: float = 0.1, anchor: str = "first_frame") -> Normalisation:
    """Both videos' statistics (frames without head and both ankles ignored) -> :class:`Normalisation` (steps 1-4
    of the module docstring; ``anchor`` as in step 5)."""
    if anchor not in ANCHORS:
        raise ValueError(f"task.anchor={anchor!r} is not one of {', '.join(ANCHORS)} (first_frame is the official)")
    h_s, a_s = _track(source, "source")
    h_t, a_t = _track(target, "target")
    r_s = ankle_range(a_s, far_fraction)
    r_t = fit_small_range(r_s, ankle_range(a_t, far_fraction))
    src = SubjectStats(r_s.close, r_s.far, *heights_at(h_s, a_s, r_s, window_fraction, reset_fraction))
    tgt = SubjectStats(r_t.close, r_t.far, *heights_at(h_t, a_t, r_t, window_fraction, reset_fraction))
    anchor_y = float(a_s[0]) if anchor == "first_frame" else None
    return Normalisation(src, tgt, (source_width / 2, target_width / 2), anchor_y)
