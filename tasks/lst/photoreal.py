"""Photo-realistic post-processing for Linear Style Transfer: an edge-preserving guided filter (He et al., "Guided
Image Filtering", ECCV 2010 / TPAMI 2013) applied to the stylised image with the *content* photo as the guide.

What the paper does and what this is:
  * Li et al. (CVPR 2019, photo-realistic style transfer) stylise with the r31 model and then run a *learned*
    spatial propagation network (SPN, Liu et al. NeurIPS 2017; official ``TrainSPN.py`` + ``libs/SPN.py``, a CUDA
    extension) that is trained to make the output's local structure follow the content photo. The official
    ``TestPhotoReal.py`` also shows a training-free variant: r31, then a bilateral filter guided by the content.
  * **The learned SPN is NOT included in condsynth.** This module is a stand-in with no trained weights: a
    colour-guided filter (``kornia.filters.guided_blur``) whose output is, in every window, an affine function of
    the content photo, ``q = a * I + b``. Where the content is flat (its local variance is well below ``eps``)
    the stylised colours are averaged, which removes the decoder's wavy artefacts; where the content has an
    edge, ``q`` follows that edge, so straight lines stay straight. It is the same trick FastPhotoStyle's fast
    smoothing step uses. Quality is lower than the paper's SPN on strong stylisations; it needs no training.

Parameters: ``radius`` (window ``2 * radius + 1`` pixels; scale it with the image, e.g. 4 at 256 px, 8 at 512 px)
and ``eps`` (regularisation in [0, 1]-image units squared: content variations below ~sqrt(eps) are smoothed over,
stronger ones kept).
"""

from __future__ import annotations

import logging

import torch
from kornia.filters import guided_blur

log = logging.getLogger(__name__)

SPN_NOTE = (
    "photo-realistic mode: edge-preserving guided filter guided by the content image (a stand-in; the paper's "
    "learned spatial propagation network is not included)"
)


def check_guided_filter_args(radius: int, eps: float) -> tuple[int, float]:
    """``radius`` an int >= 1, ``eps`` a float > 0, or a ValueError naming the ``task.guided_filter`` key."""
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"task.guided_filter.radius={radius!r} must be an integer >= 1 (window 2*radius+1 pixels)")
    try:
        eps = float(eps)
    except (TypeError, ValueError) as err:
        raise ValueError(f"task.guided_filter.eps={eps!r} must be a number > 0") from err
    if not eps > 0:
        raise ValueError(f"task.guided_filter.eps={eps} must be > 0 (e.g. 1e-2 for [0, 1] images)")
    return radius, eps


def guided_filter(stylized: torch.Tensor, content: torch.Tensor, radius: int = 8, eps: float = 1e-2) -> torch.Tensor:
    """Edge-preserving smoothing of ``stylized`` [B, 3, H, W] guided by ``content`` [B, 3, H, W] (both in [0, 1]);
    returns [B, 3, H, W] clamped to [0, 1]. The radius is reduced on images too small for its window."""
    radius, eps = check_guided_filter_args(radius, eps)
    if stylized.shape != content.shape or stylized.dim() != 4:
        raise ValueError(
            f"guided filter: stylised {tuple(stylized.shape)} and content {tuple(content.shape)} must both be "
            f"[B, 3, H, W] of the same size"
        )
    h, w = stylized.shape[-2:]
    r = min(radius, h - 1, w - 1)  # reflect padding needs the pad to be smaller than the image
    if r < 1:
        return stylized.clamp(0.0, 1.0)
    if r != radius:
        log.debug("guided filter: radius %d reduced to %d for a %dx%d image", radius, r, h, w)
    guide = content.to(stylized.dtype)
    out = guided_blur(guide, stylized, kernel_size=2 * r + 1, eps=eps, border_type="reflect")
    return out.clamp(0.0, 1.0)
