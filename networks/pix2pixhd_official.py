"""Key tables of the official pix2pixHD weight files (NVIDIA/pix2pixHD ``models/networks.py``) and the options read
from their shapes.

Official layouts (``torch.save(net.state_dict())``, ``latest_net_{G,E,D}.pth``):

* ``netG global`` (``GlobalGenerator``): one ``nn.Sequential`` ``model``: reflection pad, conv7, norm, ReLU (4
  modules), per downsampling conv3 s2, norm, ReLU (3 each), ``n_blocks`` ``ResnetBlock``\\ s (``conv_block`` =
  pad, conv, norm, ReLU, pad, conv, norm), per upsampling convT3, norm, ReLU (3 each), then pad, conv7, Tanh.
  Ours splits it into ``body`` (all but the last 3 modules) and ``head`` (the last 3), same inner layout.
* ``netG local`` (``LocalEnhancer``): ``model`` = G1's sequential without its last 3 modules (ours
  ``global_body``), and per enhancer ``n``: ``model{n}_1`` (stem + one downsampling; ours ``local_down.{n-1}``)
  and ``model{n}_2`` (resnet blocks, upsampling, and for the last one the output layers; ours ``local_up.{n-1}``).
* ``Encoder``: ``model`` = stem, downsamplings, upsamplings, output layers; ours ``model`` with the same indices.
* ``MultiscaleDiscriminator``: with ``getIntermFeat`` (the default: feature matching on) scale ``k`` block ``j``
  is ``scale{k}_layer{j}``; without it scale ``k`` is one flat sequential ``layer{k}``. The official forward runs
  ``scale{num_D-1}`` on the full-resolution input and ``scale0`` on the coarsest, so official scale ``k`` is our
  ``discriminators[num_D-1-k]`` (ours is indexed by the number of downsamplings).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from networks.official import OfficialWeightsError

#: how an official weight file of this paper is recognised where a condsynth checkpoint was expected
#: (:func:`networks.official.official_kind`): the model to import it with, the paper's name, its key prefixes
OFFICIAL_SIGNATURE = {"model": "pix2pixhd", "title": "pix2pixHD",
                      "prefixes": ("model.", "model1_1.", "scale0_layer0.", "layer0.")}
STEM_MODULES = 4  # reflection pad, conv7, norm, ReLU
SAMPLING_MODULES = 3  # conv (or convT), norm, ReLU per down/upsampling step
OUTPUT_MODULES = 3  # reflection pad, conv7, Tanh


# ------------------------------------------------------------------------------------------- generator
def global_body_length(n_downsampling: int, n_blocks: int) -> int:
    """Modules of the official G1 ``model`` sequential before its output layers."""
    return STEM_MODULES + 2 * SAMPLING_MODULES * n_downsampling + n_blocks


def generator_key(key: str, net_g: str, n_downsampling: int, n_blocks: int) -> str:
    """Official key of our generator key ``key`` (keys of :class:`GlobalGenerator` / :class:`LocalEnhancer`)."""
    if net_g == "global":
        if key.startswith("body."):
            return "model." + key[len("body."):]
        if key.startswith("head."):
            index, rest = key[len("head."):].split(".", 1)
            return f"model.{global_body_length(n_downsampling, n_blocks) + int(index)}.{rest}"
    else:
        if key.startswith("global_body."):
            return "model." + key[len("global_body."):]
        m = re.match(r"local_(down|up)\.(\d+)\.(.*)", key)
        if m:
            return f"model{int(m.group(2)) + 1}_{1 if m.group(1) == 'down' else 2}.{m.group(3)}"
    raise OfficialWeightsError(f"generator key {key} has no official counterpart (netG {net_g})")


def encoder_key(key: str) -> str:
    """Official key of our :class:`FeatureEncoder` key (same ``model.N`` layout)."""
    return key


def discriminator_block_sizes(n_layers: int) -> list[int]:
    """Modules per block of the official NLayerDiscriminator: conv+LReLU, ``n_layers`` x conv+norm+LReLU, conv."""
    return [2] + [3] * n_layers + [1]


def discriminator_key(key: str, num_d: int, n_layers: int, interm_feat: bool) -> str:
    """Official key of our :class:`MultiscaleDiscriminator` key ``discriminators.{d}.blocks.{j}.{i}.{param}``."""
    m = re.match(r"discriminators\.(\d+)\.blocks\.(\d+)\.(\d+)\.(.*)", key)
    if not m:
        raise OfficialWeightsError(f"discriminator key {key} has no official counterpart")
    d, j, i, rest = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
    scale = num_d - 1 - d
    if interm_feat:
        return f"scale{scale}_layer{j}.{i}.{rest}"
    offset = sum(discriminator_block_sizes(n_layers)[:j])
    return f"layer{scale}.{offset + i}.{rest}"


# ------------------------------------------------------------------------------------------- options
def _norm(state: Mapping[str, Tensor]) -> str:
    return "batch" if any(k.endswith("running_mean") for k in state) else "instance"


def _sequential_summary(state: Mapping[str, Tensor], prefix: str) -> tuple[list[Tensor], int]:
    """(conv weights at the top level of the sequential ``prefix``, in index order; number of resnet blocks)."""
    convs: dict[int, Tensor] = {}
    blocks: set[int] = set()
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.(.*)")
    for key, value in state.items():
        m = pattern.fullmatch(key)
        if not m:
            continue
        index, rest = int(m.group(1)), m.group(2)
        if rest.startswith("conv_block."):
            blocks.add(index)
        elif rest == "weight" and value.dim() == 4:
            convs[index] = value
    return [convs[i] for i in sorted(convs)], len(blocks)


def generator_options(state: Mapping[str, Tensor], source: str) -> dict[str, Any]:
    """Official options of a ``latest_net_G.pth`` read from its shapes: ``netG``, ``ngf``, ``input_nc``,
    ``output_nc``, ``n_downsample_global``, ``n_blocks_global``, ``n_local_enhancers``, ``n_blocks_local``,
    ``norm``."""
    convs, n_blocks = _sequential_summary(state, "model.")
    if not convs:
        raise OfficialWeightsError(f"{source} has no 'model.N' keys: not an official pix2pixHD generator file")
    enhancers = sorted({int(m.group(1)) for k in state if (m := re.match(r"model(\d+)_1\.", k))})
    threes = [w for w in convs if w.shape[-1] == 3]
    options: dict[str, Any] = {
        "input_nc": int(convs[0].shape[1]),
        "n_downsample_global": len(threes) // 2,
        "n_blocks_global": n_blocks,
        "norm": _norm(state),
    }
    if not enhancers:
        options.update(netG="global", ngf=int(convs[0].shape[0]), output_nc=int(convs[-1].shape[0]),
                       n_local_enhancers=0, n_blocks_local=0)
        return options
    n = len(enhancers)
    if enhancers != list(range(1, n + 1)):
        raise OfficialWeightsError(f"{source}: local enhancers {enhancers} are not numbered 1..{n}")
    finest_down, _ = _sequential_summary(state, f"model{n}_1.")
    finest_up, _ = _sequential_summary(state, f"model{n}_2.")
    _, blocks_local = _sequential_summary(state, "model1_2.")
    if not finest_down or not finest_up:
        raise OfficialWeightsError(f"{source}: enhancer {n} has no convolutions (model{n}_1 / model{n}_2)")
    options.update(netG="local", ngf=int(finest_down[0].shape[0]), output_nc=int(finest_up[-1].shape[0]),
                   n_local_enhancers=n, n_blocks_local=blocks_local)
    return options


def encoder_options(state: Mapping[str, Tensor], source: str) -> dict[str, Any]:
    """Options of a ``latest_net_E.pth``: ``nef``, ``input_nc``, ``feat_num``, ``n_downsample_E``, ``norm``."""
    convs, _ = _sequential_summary(state, "model.")
    if not convs:
        raise OfficialWeightsError(f"{source} has no 'model.N' keys: not an official pix2pixHD encoder file")
    return {"nef": int(convs[0].shape[0]), "input_nc": int(convs[0].shape[1]), "feat_num": int(convs[-1].shape[0]),
            "n_downsample_E": len([w for w in convs if w.shape[-1] == 3]) // 2, "norm": _norm(state)}


def discriminator_options(state: Mapping[str, Tensor], source: str) -> dict[str, Any]:
    """Options of a ``latest_net_D.pth``: ``num_D``, ``n_layers_D``, ``ndf``, ``input_nc``, ``getIntermFeat``,
    ``norm``."""
    interm = {(int(m.group(1)), int(m.group(2))) for k in state if (m := re.match(r"scale(\d+)_layer(\d+)\.", k))}
    flat = {int(m.group(1)) for k in state if (m := re.match(r"layer(\d+)\.", k))}
    if interm:
        num_d = 1 + max(s for s, _ in interm)
        n_convs = 1 + max(j for _, j in interm)
        first = state.get("scale0_layer0.0.weight")
    elif flat:
        num_d = 1 + max(flat)
        n_convs = sum(1 for k, v in state.items() if k.startswith("layer0.") and k.endswith("weight") and v.dim() == 4)
        first = state.get("layer0.0.weight")
    else:
        raise OfficialWeightsError(f"{source} has no 'scaleK_layerJ' or 'layerK' keys: not an official pix2pixHD "
                                   f"discriminator file")
    if first is None or n_convs < 3:
        raise OfficialWeightsError(f"{source}: cannot read the first convolution of scale 0")
    return {"num_D": num_d, "n_layers_D": n_convs - 2, "ndf": int(first.shape[0]), "input_nc": int(first.shape[1]),
            "getIntermFeat": bool(interm), "norm": _norm(state)}


def file_role(state: Mapping[str, Tensor]) -> str:
    """``'G'``, ``'E'`` or ``'D'``: which official network a pix2pixHD state dict holds (by its keys)."""
    if any(re.match(r"(scale\d+_layer\d+|layer\d+)\.", k) for k in state):
        return "D"
    if any(k.startswith("model.") for k in state):
        generator = any(".conv_block." in k or re.match(r"model\d+_1\.", k) for k in state)
        return "G" if generator else "E"
    raise OfficialWeightsError("not an official pix2pixHD G/E/D state dict (keys " + ", ".join(list(state)[:3]) + ")")
