"""Key tables of the official LinearStyleTransfer weight files (sunshineatnoon/LinearStyleTransfer ``libs/models.py``,
``libs/Matrix.py``) and the level read from their shapes.

The official files (``models/vgg_r31.pth``, ``vgg_r41.pth``, ``dec_r31.pth``, ``dec_r41.pth``, ``r31.pth``,
``r41.pth``) are state dicts of ``encoder3/4`` (``conv1``..``conv6`` / ``conv10``; ``conv1`` the 1x1 preprocessing
conv), ``decoder3/4`` (``conv7``..``conv11`` / ``conv11``..``conv19``) and ``MulLayer`` (``snet``/``cnet`` =
``CNN``: ``convs.0/2/4`` and ``fc``; ``compress``, ``unzip``). :mod:`networks.lst` uses the same parameter names,
so each table is the identity; the import still checks every key and shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from networks.official import OfficialWeightsError

#: first/last official conv of each part per level (our layout tables in networks.lst hold the full lists)
#: how an official weight file of this paper is recognised (:func:`networks.official.official_kind`)
OFFICIAL_SIGNATURE = {"model": "lst", "title": "LinearStyleTransfer",
                      "prefixes": ("snet.", "cnet.", "conv1.", "conv7.", "conv11.")}
_ENCODER_LAST = {"r31": "conv6", "r41": "conv10"}
_DECODER_LAST = {"r31": "conv11", "r41": "conv19"}
_TRANSFORM_CHANNELS = {256: "r31", 512: "r41"}


def official_key(key: str) -> str:
    """Official key of our encoder / decoder / transform key (the names are the official ones)."""
    return key


def file_role(state: Mapping[str, Tensor]) -> str:
    """``'encoder'``, ``'decoder'`` or ``'transform'``: which official network an LST state dict holds."""
    if "compress.weight" in state or any(k.startswith("snet.") for k in state):
        return "transform"
    if "conv1.weight" in state and tuple(state["conv1.weight"].shape[-2:]) == (1, 1):
        return "encoder"
    if any(k.startswith("conv") for k in state):
        return "decoder"
    raise OfficialWeightsError("not an official LST encoder/decoder/transform state dict (keys "
                               + ", ".join(list(state)[:3]) + ")")


def options(state: Mapping[str, Tensor], role: str, source: str) -> dict[str, Any]:
    """``level`` (and ``matrix_size`` of a transform) read from the shapes of an official file."""
    if role == "encoder":
        level = "r41" if f"{_ENCODER_LAST['r41']}.weight" in state else "r31"
        return {"level": level}
    if role == "decoder":
        level = "r41" if f"{_DECODER_LAST['r41']}.weight" in state else "r31"
        return {"level": level}
    weight = state.get("compress.weight")
    if weight is None or int(weight.shape[1]) not in _TRANSFORM_CHANNELS:
        shape = None if weight is None else tuple(weight.shape)
        raise OfficialWeightsError(f"{source}: compress.weight has shape {shape}; expected [m, 256 or 512, 1, 1]")
    return {"level": _TRANSFORM_CHANNELS[int(weight.shape[1])], "matrix_size": int(weight.shape[0])}
