"""Everybody Dance Now's converter for task=import_official: the official ``latest_net_G.pth`` (+ ``_D``,
``_Gface``, ``_Dface``) of carolineec/EverybodyDanceNow -> the options, stage and parts of a condsynth checkpoint
that inference tasks (``task=transfer``, ``task=test``) take as ``task.ckpt_path``.

    python run.py task=import_official model=edn task.files=[checkpoints/MY_MODEL_NAME_face]

The options come from the shapes (pix2pixHD's readers, :mod:`networks.pix2pixhd_official`: the official netG and
netD are pix2pixHD's classes); G's input is the 3-channel pose label + the 3-channel previous frame (official
``--label_nc 6 --no_instance``). The stage: ``face`` when ``latest_net_Gface.pth`` is given (its body generator is
the file's netG), else ``global`` or ``local`` after netG. The keys of each network are the tables of
:mod:`networks.edn` (``model.official_weights`` loads the same files at start-up).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig
from torch import Tensor

from networks import pix2pixhd_official as official
from networks.edn import OFFICIAL_LABELS, face_discriminator_key
from networks.official import OfficialWeightsError, with_step_counters
from tasks.import_official import ImportPlan, Part

LABELS = ("Gface", "Dface", "G", "D")  # longest first: "net_Gface" also contains "net_G"


def expand_files(files: list[str], task: DictConfig) -> list[str]:
    """A folder stands for its ``latest_net_{G,D,Gface,Dface}.pth`` (``latest_net_G.pth`` required)."""
    out: list[str] = []
    for f in files:
        if os.path.isdir(f):
            found = [os.path.join(f, f"latest_net_{n}.pth") for n in ("G", "D", "Gface", "Dface")]
            found = [p for p in found if os.path.isfile(p)]
            if not any(p.endswith("latest_net_G.pth") for p in found):
                raise FileNotFoundError(f"task.files: folder {f} has no latest_net_G.pth; pass the official "
                                        f"--checkpoints_dir/--name folder or the .pth files themselves")
            out += found
        else:
            out.append(f)
    return out


def _label(path: str) -> str:
    name = os.path.basename(path)
    for label in LABELS:
        if re.search(rf"_net_{label}\.pth$", name):
            return label
    raise OfficialWeightsError(f"task.files: {path} is not named <epoch>_net_<G|D|Gface|Dface>.pth as the official "
                               f"save_network names its files: rename it to say which network it holds")


def _prefixed(name: Callable[[str], str], prefix: str = "generator.") -> Callable[[str], str]:
    return lambda key: name(key[len(prefix):] if key.startswith(prefix) else key)


def _generator_name(g: Mapping[str, Any]) -> Callable[[str], str]:
    return _prefixed(lambda k: official.generator_key(k, g["netG"], g["n_downsample_global"], g["n_blocks_global"]))


def _face_d_options(state: Mapping[str, Tensor], source: str) -> dict[str, Any]:
    convs = sorted((int(m.group(1)), v) for k, v in state.items()
                   if (m := re.fullmatch(r"facemodel\.(\d+)\.weight", k)) and v.dim() == 4)
    if len(convs) < 3:
        raise OfficialWeightsError(f"{source} has no 'facemodel.N' convolutions: not the official netDface file")
    return {"ndf": int(convs[0][1].shape[0]), "n_layers": len(convs) - 2, "input_nc": int(convs[0][1].shape[1])}


def plan(states: Mapping[str, Mapping[str, Tensor]], given: Mapping[str, Any], task: DictConfig) -> ImportPlan:
    by_label: dict[str, tuple[str, Mapping[str, Tensor]]] = {}
    for path, state in states.items():
        label = _label(path)
        if label in by_label:
            raise OfficialWeightsError(f"task.files has two {label} files: {by_label[label][0]} and {path}")
        by_label[label] = (path, state)
    if "G" not in by_label:
        raise OfficialWeightsError(f"task.files {list(states)} has no generator (latest_net_G.pth)")
    g_path, g_state = by_label["G"]
    g = official.generator_options(g_state, g_path)
    if g["input_nc"] != 6:
        raise OfficialWeightsError(
            f"{g_path}: G takes {g['input_nc']} input channels, an EDN G takes 6 (pose label 3 + previous frame 3, "
            f"official --label_nc 6 --no_instance): a pix2pixHD file goes through model=pix2pixhd")
    n_local = int(g["n_local_enhancers"])
    keys: dict[str, Any] = {
        "model.label_nc": 3,
        "model.size_multiple": 2 ** (int(g["n_downsample_global"]) + n_local),
        "model.networks.global.ngf": int(g["ngf"]) * 2**n_local,
        "model.networks.global.n_downsampling": g["n_downsample_global"],
        "model.networks.global.n_blocks": g["n_blocks_global"],
        "model.networks.global.norm": g["norm"],
    }
    if g["netG"] == "local":
        keys.update({"model.networks.local.ngf": g["ngf"], "model.networks.local.n_local_enhancers": n_local,
                     "model.networks.local.n_blocks_local": g["n_blocks_local"],
                     "model.networks.local.norm": g["norm"]})
    parts = [Part("netG", g_state, _generator_name(g), g_path, OFFICIAL_LABELS["G"])]
    notes: list[str] = []
    face = "Gface" in by_label
    stage = "face" if face else str(g["netG"])
    if face:
        keys.update({"stage.generator": g["netG"], "stage.previous": g["netG"]})
        f_path, f_state = by_label["Gface"]
        f = official.generator_options(f_state, f_path)
        if f["netG"] != "global" or f["input_nc"] != 6:
            raise OfficialWeightsError(f"{f_path}: not the official faceGen (--faceGtype global: a global G on 6 "
                                       f"channels); --faceGtype unet is not supported")
        keys.update({"model.networks.face_generator.ngf": f["ngf"],
                     "model.networks.face_generator.n_downsampling": f["n_downsample_global"],
                     "model.networks.face_generator.n_blocks": f["n_blocks_global"]})
        parts.append(Part("faceG", f_state, _generator_name(f), f_path, OFFICIAL_LABELS["Gface"]))
        if "Dface" in by_label:
            dpath, dstate = by_label["Dface"]
            fd = _face_d_options(dstate, dpath)
            keys.update({"model.networks.face_discriminator.ndf": fd["ndf"],
                         "model.networks.face_discriminator.n_layers": fd["n_layers"]})
            parts.append(Part("faceD", with_step_counters(dstate), functools.partial(face_discriminator_key,
                                                                                     n_layers=fd["n_layers"]),
                              dpath, OFFICIAL_LABELS["Dface"]))
        else:
            notes.append("no latest_net_Dface.pth: the face D is freshly initialised")
        if "D" in by_label:
            notes.append(f"{by_label['D'][0]}: not used (stage face builds no body D)")
    elif "D" in by_label:
        d_path, d_state = by_label["D"]
        d = official.discriminator_options(d_state, d_path)
        if d["input_nc"] != 12:
            raise OfficialWeightsError(f"{d_path}: D takes {d['input_nc']} channels, the official EDN netD takes 12 "
                                       f"(x_t, x_t+1, y_t, y_t+1)")
        keys.update({"model.networks.discriminator.ndf": d["ndf"],
                     "model.networks.discriminator.n_layers": d["n_layers_D"],
                     "model.networks.discriminator.num_D": d["num_D"]})
        parts.append(Part("netDT", d_state, lambda k: official.discriminator_key(
            k, d["num_D"], d["n_layers_D"], d["getIntermFeat"]), d_path, OFFICIAL_LABELS["D"]))
        notes.append("the per-frame D (netD) has no official counterpart: freshly initialised")
    else:
        notes.append("no latest_net_D.pth: the temporal and per-frame Ds are freshly initialised")
    for label in ("Gface", "Dface"):
        if label in by_label and not face:
            raise OfficialWeightsError(f"{by_label[label][0]} without latest_net_Gface.pth: the face stage needs it")
    return ImportPlan(
        stage=stage,
        overrides=keys,
        parts=parts,
        notes=notes,
        options={"G": g},
    )
