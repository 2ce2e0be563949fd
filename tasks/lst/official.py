"""LST's converter for task=import_official: the official ``models/`` files of sunshineatnoon/LinearStyleTransfer
(``vgg_<level>.pth`` encoder, ``dec_<level>.pth`` decoder, ``<level>.pth`` transformation ``MulLayer``) -> the
level, stage and parts of a condsynth checkpoint.

Encoder and decoder are required (the transformation is only valid with them). With the transformation the
checkpoint is of stage ``transform`` (ready for task=stylize / stylize_video / export); without it, of stage
``decoder`` (a start for training a transformation: ``stage=transform stage.init_from=<it>``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig
from torch import Tensor

from networks import lst_official as official
from networks.official import OfficialWeightsError
from tasks.import_official import ImportPlan, Part

ATTRS = {"encoder": "encoder", "decoder": "decoder", "transform": "transform"}
WHAT = {"encoder": "LST VGG encoder", "decoder": "LST decoder", "transform": "LST transformation (MulLayer)"}


def folder_files(folder: str, level: str) -> list[str]:
    """The official files of ``level`` in a ``models/`` folder."""
    names = [f"vgg_{level}.pth", f"dec_{level}.pth", f"{level}.pth"]
    found = [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]
    if len(found) < 2:
        raise FileNotFoundError(f"task.files: folder {folder} lacks {names[0]} and/or {names[1]} (task.level={level});"
                                f" pass the official models/ folder or the .pth files themselves")
    return found


def expand_files(files: list[str], task: DictConfig) -> list[str]:
    out: list[str] = []
    for f in files:
        out += folder_files(f, str(task.level)) if os.path.isdir(f) else [f]
    return out


def plan(states: Mapping[str, Mapping[str, Tensor]], given: Mapping[str, Any], task: DictConfig) -> ImportPlan:
    """Level (from the shapes; all files must agree), stage and parts of the import."""
    by_role: dict[str, tuple[str, Mapping[str, Tensor]]] = {}
    levels: dict[str, str] = {}
    opts: dict[str, Any] = {}
    for path, state in states.items():
        role = official.file_role(state)
        if role in by_role:
            raise OfficialWeightsError(f"task.files has two {role} files: {by_role[role][0]} and {path}")
        by_role[role] = (path, state)
        read = official.options(state, role, path)
        levels[path] = read["level"]
        opts.update(read)
    for role in ("encoder", "decoder"):
        if role not in by_role:
            raise OfficialWeightsError(f"task.files {list(states)} has no {role} file (vgg_<level>.pth / "
                                       f"dec_<level>.pth): the LST networks only work together")
    if len(set(levels.values())) > 1:
        raise OfficialWeightsError(f"task.files mix levels: {levels}; pass the files of one level (r31 or r41)")
    level = next(iter(levels.values()))
    if "level" in given and str(given["level"]) != level:
        raise OfficialWeightsError(f"task.options.level={given['level']}, but the files are {level}")
    parts = [Part(ATTRS[role], state, official.official_key, path, f"{WHAT[role]} ({level})")
             for role, (path, state) in by_role.items()]
    overrides: dict[str, Any] = {"model.level": level}
    if "matrix_size" in opts:
        overrides["model.matrix_size"] = opts["matrix_size"]
    notes = [] if "transform" in by_role else [
        "no transformation file: the checkpoint is of stage decoder; train one with stage=transform "
        "stage.init_from=<this checkpoint>"]
    return ImportPlan(
        stage="transform" if "transform" in by_role else "decoder",
        overrides=overrides,
        parts=parts,
        notes=notes,
        options=opts,
    )
