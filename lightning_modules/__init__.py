"""One LightningModule per paper (its training logic), their shared bases, stages and callbacks, and the one
checkpoint home (:mod:`lightning_modules.checkpoints`) with the Python inference API (docs/python-api.md).

The papers: ``pix2pixhd`` (pix2pixHD, docs/papers/pix2pixhd.md), ``lst`` (Linear Style Transfer,
docs/papers/lst.md), ``edn`` (Everybody Dance Now, docs/papers/edn.md), ``x2face`` (X2Face) and ``face_id`` (its
identity network; both docs/papers/x2face.md). Loading any of their checkpoints:

    from lightning_modules import load
    model = load("outputs/train/pix2pixhd_global/latest/checkpoints/last.ckpt")   # eval mode, no loss networks
"""

from __future__ import annotations

from typing import Any

__all__ = ["load", "to_pil"]


def __getattr__(name: str) -> Any:  # lazy: importing the package stays cheap (run.py's start-up checks)
    if name == "load":
        from lightning_modules.loading import load

        return load
    if name == "to_pil":
        from lightning_modules.inference_io import to_pil

        return to_pil
    raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")
