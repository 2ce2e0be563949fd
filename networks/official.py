"""Shared plumbing for importing the official code's weight files: key renaming by name with a full check of
names and shapes, and recognising an official file where a condsynth checkpoint was expected.

The per-paper key tables are in ``networks/<paper>_official.py`` (each with its ``OFFICIAL_SIGNATURE``). Each table is a
function ``our key -> official key`` over the keys of our own network built with the file's options, so the import
goes by name (never by order) and every key of both sides is accounted for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

IMPORT_HINT = "python run.py task=import_official model={model} task.files=[{path}]"

_SHOWN = 6


class OfficialWeightsError(ValueError):
    """An official weight file that does not fit: missing or left-over keys, wrong shapes, unknown layout."""


def strip_data_parallel(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` adds to every key (some official files carry it)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def with_step_counters(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with a zero batch-norm step counter (``num_batches_tracked``) beside every ``running_mean`` that has
    none: PyTorch < 0.4.1, which wrote the released X2Face and EDN files, did not save them (the counter only matters
    with ``momentum=None``)."""
    out = dict(state)
    for key in state:
        if key.endswith(".running_mean"):
            out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.zeros((), dtype=torch.long))
    return out


def _shown(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def map_official_state(
    module: nn.Module,
    official: Mapping[str, Tensor],
    official_name: Callable[[str], str],
    source: str,
    what: str,
    hint: str | None = None,
) -> dict[str, Tensor]:
    """``module``'s state dict filled from ``official`` through ``official_name`` (our key -> official key).

    Every key of ``module`` must find its official key with the same shape, and every official key must be used;
    otherwise one :class:`OfficialWeightsError` lists the missing keys, the left-over keys and the wrong shapes
    (in the official file's names), naming ``source`` and ``what`` it should hold, and ``hint`` (the fix; default:
    pass the official options to task=import_official).
    """
    ours = module.state_dict()
    table = {key: official_name(key) for key in ours}
    used = set(table.values())
    missing = [off for key, off in table.items() if off not in official]
    left_over = [k for k in official if k not in used]
    bad_shape = [f"{off} {tuple(official[off].shape)} (expected {tuple(ours[key].shape)})"
                 for key, off in table.items() if off in official and official[off].shape != ours[key].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_shown(missing)}")
    if left_over:
        problems.append(f"left-over keys: {_shown(left_over)}")
    if bad_shape:
        problems.append(f"wrong shapes: {_shown(bad_shape)}")
    if problems:
        raise OfficialWeightsError(
            f"{source} does not fit the {what}: " + "; ".join(problems)
            + ". Check that the file is the one named, and "
            + (hint or "pass the official options it was trained with (task.options.<name>=...) when they cannot "
                       "be read from the shapes"))
    return {key: official[off].detach().clone() for key, off in table.items()}


def official_signatures() -> list[Mapping[str, object]]:
    """Every paper's ``OFFICIAL_SIGNATURE`` (its ``networks/<paper>_official.py`` key table module), in name order:
    a new paper's table is found without editing this file."""
    import importlib
    import pkgutil

    import networks

    out = []
    for info in sorted(pkgutil.iter_modules(networks.__path__), key=lambda i: i.name):
        if info.name.endswith("_official"):
            signature = getattr(importlib.import_module(f"networks.{info.name}"), "OFFICIAL_SIGNATURE", None)
            if signature is not None:
                out.append(signature)
    return out


def official_kind(state: object) -> Mapping[str, object] | None:
    """The ``OFFICIAL_SIGNATURE`` of the paper whose official weight file ``state`` (a loaded file) looks like,
    else None."""
    if not isinstance(state, Mapping) or not state or "state_dict" in state:
        return None
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    keys = list(strip_data_parallel(state))
    for signature in official_signatures():
        if any(k.startswith(tuple(signature["prefixes"])) for k in keys):
            return signature
    return None


def not_a_checkpoint_hint(state: object, path: str) -> str | None:
    """The fix for passing an official weight file where a condsynth checkpoint is needed, or None."""
    kind = official_kind(state)
    if kind is None:
        return None
    return (f"{path} is an official {kind['title']} weights file, not a condsynth checkpoint: convert it first with "
            f"{IMPORT_HINT.format(model=kind['model'], path=path)} and pass the checkpoint it writes")
