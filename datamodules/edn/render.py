"""Keypoints -> label image, as the official ``data_prep/renderopenpose.py`` of Everybody Dance Now: joints as
filled dots, limbs as filled ellipses blended 0.6 over the canvas (``cv.addWeighted(canvas, 0.4, limb, 0.6)``),
drawn on a white canvas in the official colour tables, then face dots and hands (optional).

Sizes scale with the image height, relative to the paper's 1024x512 labels: limb half-width ``stick_width``
4 px, joint radius 8 px, hand limbs 2 px / dots 3 px, face dots 4 px, all times ``H / 512``. (The official code
draws on a 1920x1080 canvas and resizes it to 1024x512; here the label is drawn at its own size, sub-pixel
centres kept, so no resize is needed and a 64x32 label is drawn in a few hundred microseconds.)

Pure NumPy: each dot and limb touches only its bounding box, so the cost is the drawn area, not the image size.
"""

from __future__ import annotations

import numpy as np

from datamodules.edn.keypoints import FramePose, head_point, to_face70

# Official tables, written in OpenCV's BGR order as in renderopenpose.py; the label is saved after a BGR -> RGB
# channel swap (``canvas[:, :, [2, 1, 0]]``), so the RGB colour is each triple reversed.
BODY_25_COLORS_BGR = [
    [255, 0, 85], [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
    [0, 255, 0], [255, 0, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255],
    [0, 0, 255], [255, 0, 170], [170, 0, 255], [255, 0, 255], [85, 0, 255], [0, 0, 255], [0, 0, 255],
    [0, 0, 255], [0, 255, 255], [0, 255, 255], [0, 255, 255]]
BODY_25_LIMBS = [[0, 1], [0, 15], [0, 16], [1, 2], [1, 5], [1, 8], [2, 3], [3, 4], [5, 6], [6, 7], [8, 9], [8, 12],
                 [9, 10], [10, 11], [11, 22], [11, 24], [12, 13], [13, 14], [14, 19], [14, 21], [15, 17], [16, 18],
                 [19, 20], [22, 23]]
COCO_18_COLORS_BGR = [
    [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
    [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
    [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85]]
COCO_18_LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10], [1, 11], [11, 12],
                 [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17]]
HAND_COLORS_BGR = [
    [230, 53, 40], [231, 115, 64], [233, 136, 31], [213, 160, 13], [217, 200, 19], [170, 210, 35], [139, 228, 48],
    [83, 214, 45], [77, 192, 46], [83, 213, 133], [82, 223, 190], [80, 184, 197], [78, 140, 189], [86, 112, 208],
    [83, 73, 217], [123, 46, 183], [189, 102, 255], [218, 83, 232], [229, 65, 189], [236, 61, 141], [255, 102, 145]]
#: hand limbs (official ``linearSeq``): each finger from the wrist (0) through its 4 joints
HAND_LIMBS = [pair for f in range(5) for pair in
              ([[0, 4 * f + 1]] + [[4 * f + k, 4 * f + k + 1] for k in range(1, 4)])]
#: official ``renderface_sparse`` with 8 points (of OpenPose's 70): nose bridge, nose tip, chin, jaw ends, pupils
FACE_SPARSE_70 = [27, 30, 8, 0, 16, 33, 68, 69]
FACE_THRESHOLD = 0.2     # official: face drawn only when its mean confidence (over 70) is >= 0.2
HAND_THRESHOLD = 0.05    # official renderhand threshold
REFERENCE_HEIGHT = 512   # the paper's label height at which the official sizes below hold


def _rgb(table: list[list[float]]) -> np.ndarray:
    return np.asarray(table, dtype=np.float32)[:, ::-1].copy()


BODY_25_RGB, COCO_18_RGB, HAND_RGB = _rgb(BODY_25_COLORS_BGR), _rgb(COCO_18_COLORS_BGR), _rgb(HAND_COLORS_BGR)


def _dot(canvas: np.ndarray, x: float, y: float, r: float, color: np.ndarray) -> None:
    h, w = canvas.shape[:2]
    x0, x1 = max(int(np.floor(x - r)), 0), min(int(np.ceil(x + r)) + 1, w)
    y0, y1 = max(int(np.floor(y - r)), 0), min(int(np.ceil(y + r)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    mask = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    canvas[y0:y1, x0:x1][mask] = color


def _limb(canvas: np.ndarray, p: np.ndarray, q: np.ndarray, half_width: float, color: np.ndarray,
          alpha: float = 0.6) -> None:
    """Filled ellipse with its long axis from ``p`` to ``q`` (semi-axes |pq|/2 and ``half_width``), blended."""
    h, w = canvas.shape[:2]
    c = (p + q) / 2
    d = q - p
    a = max(float(np.hypot(*d)) / 2, 1e-6)
    b = max(half_width, 1e-6)
    r = max(a, b)
    x0, x1 = max(int(np.floor(c[0] - r)), 0), min(int(np.ceil(c[0] + r)) + 1, w)
    y0, y1 = max(int(np.floor(c[1] - r)), 0), min(int(np.ceil(c[1] + r)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    u = d / (2 * a)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    dx, dy = xx - c[0], yy - c[1]
    along = dx * u[0] + dy * u[1]
    across = -dx * u[1] + dy * u[0]
    mask = (along / a) ** 2 + (across / b) ** 2 <= 1.0
    region = canvas[y0:y1, x0:x1]
    region[mask] = (1 - alpha) * region[mask] + alpha * color


def render_pose(pose: FramePose, height: int, width: int, face: bool = True, hands: bool = True,
                stick_width: float | None = None, background: float = 255.0) -> np.ndarray:
    """The label image [H, W, 3] uint8 (RGB) of one pose, in the official style (module docstring).
    ``stick_width``: the limb half-width in pixels (default 4 * H / 512)."""
    k = height / REFERENCE_HEIGHT
    stick = 4.0 * k if stick_width is None else float(stick_width)
    canvas = np.full((height, width, 3), background, dtype=np.float32)
    body = pose.body
    if len(body) == 25:
        colors, limbs = BODY_25_RGB, BODY_25_LIMBS
    elif len(body) == 18:
        colors, limbs = COCO_18_RGB, COCO_18_LIMBS
    else:
        raise ValueError(f"cannot render a pose of {len(body)} joints; supported: 25 (BODY_25), 18 (COCO-18)")
    for j, (x, y, conf) in enumerate(body):
        if conf > 0:
            _dot(canvas, x, y, 2 * stick, colors[j])
    for i, j in limbs:
        if body[i, 2] > 0 and body[j, 2] > 0:
            _limb(canvas, body[i, :2], body[j, :2], stick, colors[i])
    if face and pose.face is not None and len(pose.face):
        pts = to_face70(pose.face)  # a Face Mesh (468/478 points) is drawn as OpenPose's 70
        if len(pts) == 70:  # OpenPose face: the official sparse points, if the face is confident enough
            pts = pts[FACE_SPARSE_70] if pts[:, 2].sum() / 70.0 >= FACE_THRESHOLD else pts[:0]
        for x, y, conf in pts:
            if conf > 0:
                _dot(canvas, x, y, stick, np.zeros(3, np.float32))
    if hands:
        for hand in (pose.hand_right, pose.hand_left):
            if hand is None or len(hand) != 21:
                continue
            for j, (x, y, conf) in enumerate(hand):
                if conf > HAND_THRESHOLD:
                    _dot(canvas, x, y, 0.75 * stick, HAND_RGB[j])
            for i, j in HAND_LIMBS:
                if hand[i, 2] > HAND_THRESHOLD and hand[j, 2] > HAND_THRESHOLD:
                    _limb(canvas, hand[i, :2], hand[j, :2], 0.5 * stick, HAND_RGB[j])
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


FACE_NOSE_TIP_70 = 30


def face_centre(face: np.ndarray | None) -> np.ndarray | None:
    """The nose tip of a confident face (OpenPose's 70 points, or a Face Mesh mapped to them), else None."""
    pts = to_face70(face)
    if pts is None or len(pts) != 70 or pts[:, 2].sum() / 70.0 < FACE_THRESHOLD or pts[FACE_NOSE_TIP_70, 2] <= 0:
        return None
    return pts[FACE_NOSE_TIP_70, :2]


def face_box(pose: FramePose | None, height: int, width: int, size: int | None = None) -> tuple[int, int, int]:
    """(top, left, size) of the square face crop: ``size`` = 128 * H / 512 by default (the paper's 128 px at
    1024x512), clamped inside the image (official ``makebox128``). Centred on the face's nose tip (point 30 of
    OpenPose's 70; a Face Mesh is mapped to them) when the face is confident (mean confidence over 70 >=
    ``FACE_THRESHOLD``, as the renderer), else on the body's nose or ears (official ``aveface``). No head detected:
    the box is centred at the top middle of the image."""
    s = int(round(128 * height / REFERENCE_HEIGHT)) if size is None else int(size)
    s = max(1, min(s, height, width))
    head = face_centre(pose.face) if pose is not None else None
    if head is None and pose is not None:
        head = head_point(pose.body)
    cx, cy = (width / 2, s / 2) if head is None else (float(head[0]), float(head[1]))
    top = int(round(cy - s / 2))
    left = int(round(cx - s / 2))
    return min(max(top, 0), height - s), min(max(left, 0), width - s), s
