"""Everybody Dance Now pose normalisation (official graph_posenorm.py) on hand-made ankle tracks, against
hand-computed positions, heights, scales and translations."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.edn.keypoints import FramePose, KeypointError, pose_stats
from datamodules.edn.posenorm import AnkleRange, ankle_range, fit_normalisation, fit_small_range, heights_at


def _standing(ankle: float, height: float, x: float = 100.0) -> FramePose:
    body = np.zeros((25, 3))
    body[0] = [x, ankle - height, 1]        # nose straight above the mean ankle
    body[11] = [x - 10, ankle, 1]           # right ankle
    body[14] = [x + 10, ankle, 1]           # left ankle
    return FramePose(body)


def _video(rows: list[tuple[float, float]]) -> list[FramePose]:
    return [_standing(a, h) for a, h in rows]


# source: close 400, median 360, far 345 (15 above the median, < 0.5 * 40); span 55, height window 0.05 * 55 = 2.75
SOURCE = [(400, 200), (345, 150), (360, 170), (360, 170), (360, 170)]
# target: close 480, median 460, far 455 (5 < 0.5 * 20); span 25 (not shorter than the source's: kept)
TARGET = [(480, 300), (455, 260), (460, 270), (460, 270), (460, 270)]


def test_ankle_range_by_hand() -> None:
    assert ankle_range(np.array([400, 345, 360, 360, 360])) == AnkleRange(400, 345, 360)
    # 20 above the median is not < 0.5 * 20: no frame qualifies, far = the median
    assert ankle_range(np.array([480, 440, 460, 460, 460])) == AnkleRange(480, 460, 460)
    assert ankle_range(np.array([480, 440, 460, 460, 460]), far_fraction=1.5).far == 440
    with pytest.raises(KeypointError, match="nothing to measure"):
        ankle_range(np.array([]))


def test_small_range_recentres_the_target() -> None:
    source, target = AnkleRange(400, 388, 390), AnkleRange(500, 445, 460)
    # source span 12 < target span 55: target middle 472.5 +- 6
    assert fit_small_range(source, target) == AnkleRange(478.5, 466.5, 460)
    assert fit_small_range(target, source) == source          # a longer source span leaves the target alone


def test_heights_window_fallback_and_reset() -> None:
    heights, ankles = np.array([300, 240, 260, 260, 260]), np.array([500, 445, 460, 460, 460])
    # window 0.05 * 12 = 0.6 holds no frame near 478.5 or 466.5: the nearest (460, height 260) is used; then the
    # tallest frame (300) is more than 10% taller than 260, so it resets the close height
    assert heights_at(heights, ankles, AnkleRange(478.5, 466.5, 460)) == (300, 260)
    assert heights_at(heights, ankles, AnkleRange(478.5, 466.5, 460), reset_fraction=0.2) == (260, 260)
    # a wide window (0.5 * 55 = 27.5) around 500 and 445 takes the tallest in it
    assert heights_at(heights, ankles, AnkleRange(500, 445, 460), window_fraction=0.5) == (300, 260)


def test_normalisation_official_first_frame_anchor() -> None:
    norm = fit_normalisation(_video(SOURCE), _video(TARGET), 200, 200)
    s, t = norm.source, norm.target
    assert (s.close, s.far, s.height_close, s.height_far) == (400, 345, 200, 150)
    assert (t.close, t.far, t.height_close, t.height_far) == (480, 455, 300, 260)
    assert norm.scale_close == 1.5 and norm.scale_far == pytest.approx(260 / 150)
    assert norm.anchor_y == 400                                  # the first frame's lower ankle
    # far frame: p = 0, s = 260/150, t = 455, shift 110; ankle -> s (345 - 400) + 400 + 110 = 414.67
    out, scale, shift = norm.apply(_standing(345, 150))
    assert scale == pytest.approx(260 / 150) and shift == pytest.approx(110)
    assert pose_stats(out.body) == pytest.approx((260, 510 - 55 * 260 / 150))
    # close frame: p = 1, s = 1.5, t = 480 (the anchor frame: its ankle lands on t)
    out, scale, shift = norm.apply(_standing(400, 200))
    assert (scale, shift) == pytest.approx((1.5, 80))
    assert pose_stats(out.body) == pytest.approx((300, 480))
    # halfway: s = (1.5 + 260/150) / 2, t = 467.5, shift 95; ankle -> s * -27.5 + 495
    out, scale, shift = norm.apply(_standing(372.5, 175))
    half = (1.5 + 260 / 150) / 2
    assert scale == pytest.approx(half) and shift == pytest.approx(95)
    assert pose_stats(out.body) == pytest.approx((175 * half, 495 - 27.5 * half))
    assert out.body[0, 0] == pytest.approx(100)                  # the centre column stays (x = width / 2)


def test_normalisation_own_ankle_anchor_and_widths() -> None:
    norm = fit_normalisation(_video(SOURCE), _video(TARGET), 200, 300, anchor="ankle")
    out, _, _ = norm.apply(_standing(345, 150))
    assert pose_stats(out.body) == pytest.approx((260, 455))     # the ankle lands on the target's far position
    assert out.body[0, 0] == pytest.approx(150)                  # source centre 100 -> target centre 150
    # a frame without ankles borrows the given ankle y (the previous frame's)
    no_feet = _standing(345, 150)
    no_feet.body[[11, 14], 2] = 0
    _, scale, shift = norm.apply(no_feet, ankle_y=400.0)
    assert (scale, shift) == pytest.approx((1.5, 80))
    with pytest.raises(KeypointError, match="no previous frame"):
        norm.apply(no_feet)
    with pytest.raises(ValueError, match="task.anchor='middle'"):
        fit_normalisation(_video(SOURCE), _video(TARGET), 200, 200, anchor="middle")


def test_normalisation_needs_full_body_frames() -> None:
    with pytest.raises(KeypointError, match="no source frame has the head and both ankles"):
        fit_normalisation([FramePose(np.zeros((25, 3)))], [_standing(400, 200)], 100, 100)
