"""pix2pixHD's converter for task=import_official: official ``latest_net_G.pth`` (+ ``latest_net_E.pth``,
``latest_net_D.pth``) of NVIDIA/pix2pixHD -> the options, stage and parts of a condsynth checkpoint.

Options come from the shapes (:mod:`networks.pix2pixhd_official`); ``label_nc`` follows from G's input channels
with the official default ``--no_instance`` off (boundary map on) and the encoder's features when its file is
given, e.g. 36 = 35 classes + 1 boundary map for label2city. ``task.options.<official name>`` states what shapes
cannot tell (``label_nc``, ``no_instance``) and is checked against what they can. Without ``latest_net_D.pth``,
D is built with ``task.without_discriminator`` (the official recipe's ndf, n_layers_D, num_D) and left random.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig
from torch import Tensor

from networks import pix2pixhd_official as official
from networks.official import OfficialWeightsError
from tasks.import_official import ImportPlan, Part

FILE_NAMES = {"G": "latest_net_G.pth", "E": "latest_net_E.pth", "D": "latest_net_D.pth"}


def expand_files(files: list[str], task: DictConfig) -> list[str]:
    """A folder stands for the official files it holds (``latest_net_G.pth`` required)."""
    out: list[str] = []
    for f in files:
        if os.path.isdir(f):
            found = [os.path.join(f, n) for n in FILE_NAMES.values() if os.path.isfile(os.path.join(f, n))]
            if not any(p.endswith(FILE_NAMES["G"]) for p in found):
                raise FileNotFoundError(f"task.files: folder {f} has no {FILE_NAMES['G']}; pass the official "
                                        f"checkpoints/<name> folder or the .pth files themselves")
            out += found
        else:
            out.append(f)
    return out


def _role(path: str, state: Mapping[str, Tensor]) -> str:
    name = os.path.basename(path)
    for role in ("G", "E", "D"):
        if f"net_{role}" in name:
            return role
    return official.file_role(state)


def _check(given: Mapping[str, Any], read: Mapping[str, Any], source: str) -> None:
    for key, value in read.items():
        if key in given and str(given[key]) != str(value):
            raise OfficialWeightsError(f"task.options.{key}={given[key]}, but {source} has {key}={value}: drop "
                                       f"task.options.{key} (it is read from the file) or pass the right file")


def plan(states: Mapping[str, Mapping[str, Tensor]], given: Mapping[str, Any], task: DictConfig) -> ImportPlan:
    """Options, stage (``global`` for ``netG global``, ``joint`` for ``netG local``) and parts of the import."""
    by_role: dict[str, tuple[str, Mapping[str, Tensor]]] = {}
    for path, state in states.items():
        role = _role(path, state)
        if role in by_role:
            raise OfficialWeightsError(f"task.files has two {role} files: {by_role[role][0]} and {path}")
        by_role[role] = (path, state)
    if "G" not in by_role:
        raise OfficialWeightsError(f"task.files {list(states)} has no generator ({FILE_NAMES['G']})")
    g_path, g_state = by_role["G"]
    g = official.generator_options(g_state, g_path)
    _check(given, g, g_path)
    opts: dict[str, Any] = dict(g)
    notes: list[str] = []
    parts: list[Part] = []

    use_features = "E" in by_role
    feat_num = 0
    if use_features:
        e_path, e_state = by_role["E"]
        e = official.encoder_options(e_state, e_path)
        _check(given, {"feat_num": e["feat_num"], "nef": e["nef"], "n_downsample_E": e["n_downsample_E"]}, e_path)
        feat_num = e["feat_num"]
        opts.update(nef=e["nef"], feat_num=feat_num, n_downsample_E=e["n_downsample_E"])
        parts.append(Part("netE", e_state, official.encoder_key, e_path, "pix2pixHD encoder E"))
    no_instance = bool(given.get("no_instance", False))
    label_nc = int(given.get("label_nc", g["input_nc"] - (0 if no_instance else 1) - feat_num))
    if label_nc < 1 or label_nc + int(not no_instance) + feat_num != g["input_nc"]:
        raise OfficialWeightsError(
            f"{g_path}: G takes {g['input_nc']} input channels, which is not label_nc ({label_nc}) + boundary map "
            f"({int(not no_instance)}) + features ({feat_num}); set task.options.label_nc / task.options.no_instance")
    opts.update(label_nc=label_nc, no_instance=no_instance)

    if "D" in by_role:
        d_path, d_state = by_role["D"]
        d = official.discriminator_options(d_state, d_path)
        _check(given, {k: d[k] for k in ("num_D", "n_layers_D", "ndf")}, d_path)
        if d["input_nc"] != label_nc + int(not no_instance) + 3:
            raise OfficialWeightsError(f"{d_path}: D takes {d['input_nc']} channels, G's label input + RGB is "
                                       f"{label_nc + int(not no_instance) + 3}: the files come from different models")
        parts.append(Part("netD", d_state, functools.partial(
            official.discriminator_key, num_d=d["num_D"], n_layers=d["n_layers_D"], interm_feat=d["getIntermFeat"]),
            d_path, "pix2pixHD multi-scale discriminator"))
    else:
        defaults = task.without_discriminator
        d = {"ndf": int(given.get("ndf", defaults.ndf)), "n_layers_D": int(given.get("n_layers_D", defaults.n_layers_D)),
             "num_D": int(given.get("num_D", defaults.num_D[g["netG"]])), "norm": g["norm"]}
        notes.append(f"no {FILE_NAMES['D']}: D (num_D {d['num_D']}, ndf {d['ndf']}) is freshly initialised; "
                     f"fine-tuning from this checkpoint trains it from scratch")
    opts.update(num_D=d["num_D"], n_layers_D=d["n_layers_D"], ndf=d["ndf"])

    parts.insert(0, Part("netG", g_state, functools.partial(
        official.generator_key, net_g=g["netG"], n_downsampling=g["n_downsample_global"],
        n_blocks=g["n_blocks_global"]), g_path, f"pix2pixHD generator (netG {g['netG']})"))
    return ImportPlan(
        stage="global" if g["netG"] == "global" else "joint",
        overrides=_config_keys(opts, use_features),
        parts=parts,
        notes=notes,
        options=opts,
    )


def _config_keys(o: Mapping[str, Any], use_features: bool) -> dict[str, Any]:
    """Official options -> the condsynth config keys that build the same networks."""
    local = o["netG"] == "local"
    n_local = int(o["n_local_enhancers"])
    keys: dict[str, Any] = {
        "dataset.label_nc": o["label_nc"],
        "model.use_instance": not o["no_instance"],
        "model.use_features": use_features,
        "model.size_multiple": 2 ** (int(o["n_downsample_global"]) + n_local),
        "model.networks.global.ngf": int(o["ngf"]) * 2**n_local,
        "model.networks.global.n_downsampling": o["n_downsample_global"],
        "model.networks.global.n_blocks": o["n_blocks_global"],
        "model.networks.global.norm": o["norm"],
        "model.networks.discriminator.ndf": o["ndf"],
        "model.networks.discriminator.n_layers": o["n_layers_D"],
        "model.networks.discriminator.num_D": o["num_D"],
        "model.networks.discriminator.norm": o["norm"],
    }
    if not local and int(o["ngf"]) % 2 == 0:
        # the local enhancer that fits this G1 (its G1 is 2 * ngf wide), for stage=local stage.init_from=<it>:
        # the official --load_pretrain label2city_512p then --netG local --ngf 32
        keys["model.networks.local.ngf"] = int(o["ngf"]) // 2
    if local:
        keys.update({"model.networks.local.ngf": o["ngf"], "model.networks.local.n_local_enhancers": n_local,
                     "model.networks.local.n_blocks_local": o["n_blocks_local"],
                     "model.networks.local.norm": o["norm"]})
    if use_features:
        keys.update({"model.feat_num": o["feat_num"], "model.networks.encoder.nef": o["nef"],
                     "model.networks.encoder.n_downsampling": o["n_downsample_E"],
                     "model.networks.encoder.norm": o["norm"]})
    return keys
