"""The command line's front door: one-line errors, checked overrides and the project's own help.

``run.py`` calls :func:`check_overrides` before Hydra composes anything (so a mistyped key or option stops at
once, with a suggestion, and no run folder is made), :func:`fail` for every error of the project's own, and
:func:`project_help` for ``--help``. ``HYDRA_FULL_ERROR=1`` or ``debug=true`` shows tracebacks instead.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from tasks.config import CONF_DIR, ConfigError, compose_config

log = logging.getLogger("condsynth")

#: errors that carry a message for the user (what to change), not a bug: shown as one line
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, ModuleNotFoundError,
                                                NotADirectoryError, IsADirectoryError)


def debug_requested(argv: Sequence[str] = ()) -> bool:
    """Tracebacks instead of one-line errors: ``HYDRA_FULL_ERROR=1`` or the override ``debug=true``."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or any(a.lower() == "debug=true" for a in argv)


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text.removeprefix("error: ")


def fail(err: BaseException, debug: bool = False) -> NoReturn:
    """Report ``err`` as one ``error: ...`` line on stderr (and in the run's log) and exit with code 2."""
    if debug:
        raise err
    message = f"error: {one_line(err)}"
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, (), None)
    for handler in logging.getLogger().handlers:  # the run's log file keeps the error; the console gets one line
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    print(message, file=sys.stderr, flush=True)
    sys.exit(2)


#: what Hydra itself writes into a run folder before the task runs (and the run folder's lock)
HYDRA_OWN = (".hydra", ".lock")


def remove_unused_run_dir(run_dir: str | os.PathLike | None) -> bool:
    """A run that stopped at start-up leaves nothing behind: when everything this run created in ``run_dir`` is
    Hydra's own (``.hydra/``, the log, the lock), remove it; the folder itself only when this run created it (a
    folder given with ``hydra.run.dir`` that held the user's files keeps them). Returns whether the folder is gone."""
    from tasks.run_dir import created_by_this_run, release_run_dir

    if not run_dir or not os.path.isdir(run_dir):
        return False
    made, mine = created_by_this_run(run_dir)
    if not all(name in HYDRA_OWN or name.endswith(".log") for name in mine):
        return False  # the run wrote something of its own: keep it
    root = logging.getLogger()
    inside = os.path.realpath(run_dir) + os.sep
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and os.path.realpath(handler.baseFilename).startswith(inside):
            root.removeHandler(handler)
            handler.close()
    release_run_dir(run_dir)
    if made:
        shutil.rmtree(run_dir, ignore_errors=True)
        return True
    for name in mine:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(path)
    return False


def _latest_link(cfg: DictConfig) -> str | None:
    """``<output_dir>/<task>/<model>_<stage>/latest`` for a run in that default layout, on rank 0; else None."""
    run_dir = str(cfg.paths.get("run_dir") or "")
    if not run_dir or os.environ.get("RANK", "0") != "0" or os.environ.get("LOCAL_RANK", "0") != "0":
        return None
    parent = os.path.dirname(os.path.realpath(run_dir))
    if os.path.basename(parent) != str(cfg.run_name) or os.path.basename(os.path.dirname(parent)) != cfg.task.name:
        return None
    return os.path.join(parent, "latest")


def link_latest(cfg: DictConfig) -> str | None:
    """Point ``<output_dir>/<task>/<model>_<stage>/latest`` at this run's folder (the newest run of that task,
    model and stage), replacing the link atomically. Only for runs in that default layout, on rank 0; a run given
    through the link itself (``hydra.run.dir=.../latest``) leaves it as it is."""
    link = _latest_link(cfg)
    target = os.path.basename(os.path.realpath(str(cfg.paths.get("run_dir") or "")))
    if link is None or target == "latest":
        return None
    return _point(link, target, cfg.paths.run_dir)


def previous_latest(cfg: DictConfig) -> str | None:
    """Where the ``latest`` link points before this run moves it (None: no link)."""
    link = _latest_link(cfg)
    return os.readlink(link) if link and os.path.islink(link) else None


def restore_latest(cfg: DictConfig, previous: str | None) -> None:
    """Put the ``latest`` link back where it pointed before this run (a run that stopped at start-up)."""
    link = _latest_link(cfg)
    if link is None:
        return
    if previous is None:
        with contextlib.suppress(OSError):
            os.remove(link)
    else:
        _point(link, previous, cfg.paths.run_dir)


def _point(link: str, target: str, run_dir: str) -> str | None:
    tmp = f"{link}.{os.getpid()}.tmp"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError as err:  # e.g. a filesystem without symlinks: say where the run is instead
        log.info("could not update %s (%s); this run is %s", link, err, run_dir)
        return None
    return link


# ------------------------------------------------------------------------------------------------ noise
#: third-party warnings a normal run triggers on purpose or cannot act on, silenced on the command line
QUIET_WARNINGS = (
    r".*module\(s\) in eval mode.*",         # Lightning: frozen stage parts and pretrained nets stay in eval mode
    r".*LeafSpec.*",                            # Lightning's own use of a torch deprecation
    r".*`srun` command is available.*",         # Lightning on machines with SLURM, when not started by srun
    r".*RANDOM weights.*",                      # already in the log once (networks.weights.warn_random_weights)
)


class _DropTips(logging.Filter):
    """Lightning's advertising tips (litmodels, litlogger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip")


def quiet_noise() -> None:
    """Silence the harmless third-party warnings and tips that a normal run causes (each named above)."""
    import warnings

    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropTips())


# ------------------------------------------------------------------------------------------- overrides
def _groups(conf: Path) -> dict[str, list[str]]:
    """Config group -> its options (``stage`` also offers every model's stage names)."""
    groups: dict[str, list[str]] = {}
    for folder in conf.rglob("*"):
        if folder.is_dir() and any(folder.glob("*.yaml")):
            name = folder.relative_to(conf).as_posix()
            groups[name] = sorted(p.stem for p in folder.glob("*.yaml"))
    return groups


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, DictConfig):
        for key in node.keys():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
                yield from _keys(child, path)


def _has_key(cfg: DictConfig, dotted: str) -> bool:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or node._is_none() or part not in node.keys():
            return False
        node = node._get_node(part)
    return True


def check_overrides(argv: Sequence[str], conf_dir: str = CONF_DIR) -> None:
    """Stop on an unknown group option (``model=foo``) or an unknown key (``trainer.max_stepz=5``) with the closest
    valid spellings, before Hydra makes a run folder. Sweeps (``a=1,2``) are checked on their first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    if not args:
        return
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception as err:  # noqa: BLE001 - Hydra's own message is clear enough, in one line
        raise ConfigError(f"cannot parse the overrides: {one_line(err)}") from None
    groups = _groups(Path(conf_dir))
    chosen: list[str] = []
    values = []
    for ov in overrides:
        key = ov.key_or_group
        if key.startswith("hydra") or ov.is_delete():
            continue
        if key in groups and ov.package is None:
            options = [str(v) for v in (ov.sweep_iterator() if ov.is_sweep_override() else [ov.value()])]
            for option in options:
                if option not in groups[key] and option != "null":
                    close = difflib.get_close_matches(option, groups[key], n=3)
                    hint = f"did you mean {' or '.join(f'{key}={c}' for c in close)}? " if close else ""
                    raise ConfigError(f"{key}={option} is not an option: {hint}"
                                      f"the options of {key} are {', '.join(groups[key])}")
            chosen.append(f"{key}={options[0]}")
        elif not ov.is_add() and not ov.is_force_add():
            values.append(key)
    if not values:
        return
    cfg = compose_config(chosen)
    known = list(_keys(cfg))
    for key in values:
        if _has_key(cfg, key):
            continue
        close = [c for c in difflib.get_close_matches(key, known, n=4, cutoff=0.75) if not key.startswith(c + ".")][:3]
        hint = f"did you mean {' or '.join(close)}?" if close else f"to add a new key, write +{key}=..."
        raise ConfigError(f"{key} is not a config key: {hint} (python run.py --help lists the groups; "
                          f"python run.py --cfg job prints every key)")


#: a stored value the command line may take from a checkpoint: a plain token (no quoting, brackets, braces,
#: interpolation or spaces: nothing Hydra's override grammar could read as more than one value)
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/+-]*$")
_SAFE_KEY = re.compile(r"^model(\.[A-Za-z][A-Za-z0-9_]*)+$")


def safe_override(key: str, value: Any) -> str | None:
    """``key=value`` for a value read from a checkpoint, or None when it cannot be written safely as one plain
    override (lists, strings with other characters: the loader sets those itself, not the command line)."""
    if not _SAFE_KEY.match(key) or key.endswith("._target_"):
        return None
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str) and value and _SAFE_VALUE.match(value) and value.lower() not in (
            "null", "true", "false", "none"):
        text = value
    else:
        return None
    return f"{key}={text}"


def checkpoint_overrides(argv: Sequence[str]) -> list[str]:
    """An inference task (``task.ckpt_path=<ckpt>``) takes its model, stage and size from the checkpoint, and the
    stored model values that differ from those defaults (the keys that shape its networks): the overrides to add
    when the command line does not give them. A model or stage given that differs from the checkpoint's is an
    error naming both; an unreadable or refused checkpoint stops here, in one line. Only option names checked
    against ``conf/`` and plain ``model.<key>=<value>`` strings are
    added (never ``+``/``~``, ``hydra.``, ``task.``, brackets or interpolations): a checkpoint is data."""
    given = dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith(("-", "+", "~")))
    ckpt = given.get("task.ckpt_path")
    if not ckpt or "task" not in given or not os.path.isfile(ckpt) or any(a in ("-m", "--multirun") for a in argv):
        return []
    from lightning_modules.checkpoints import read_record
    from lightning_modules.loading import config_names, stored_values

    record = read_record(ckpt)  # unreadable or refused: one line now, before any work
    names = config_names(record)
    added = []
    for name in names:
        key, stored = name.split("=", 1)
        if key in ("model", "stage") and key in given and given[key] != stored:
            raise ConfigError(f"task.ckpt_path={ckpt} is a {key} '{stored}' checkpoint, but {key}={given[key]} was "
                              f"given: drop {key}= (it is read from the checkpoint) or pass another checkpoint")
        if key not in given:
            added.append(name)
    defaults = compose_config(names)
    for key, value in stored_values(record, defaults).items():
        override = safe_override(key, value) if key.startswith("model.") else None
        if override is None:
            continue
        if key in given and override != f"{key}={given[key]}":
            raise ConfigError(f"task.ckpt_path={ckpt} is a {key} '{override.split('=', 1)[1]}' checkpoint, but "
                              f"{key}={given[key]} was given: drop {key}= (the networks are rebuilt from the "
                              f"checkpoint) or pass another checkpoint")
        if key not in given:
            added.append(override)
    return added


# ------------------------------------------------------------------------------------------------ help
def _first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").strip()
    return ""


def project_help(conf_dir: str = CONF_DIR) -> str:
    """Tasks, each model's stage chain and the common overrides, read from the config files themselves."""
    conf = Path(conf_dir)
    lines = ["condsynth: conditional image synthesis (Hydra + PyTorch Lightning). python run.py [group=option ...] "
             "[key=value ...]", "", "Tasks (task=...):"]
    for path in sorted((conf / "task").glob("*.yaml")):
        data = OmegaConf.load(path)
        models = data.get("models")
        only = f"  [{', '.join(models)}]" if models else ""
        lines.append(f"  {path.stem:18s} {_first_comment(path)}{only}")
    lines += ["", "Models (model=...) and their stages (stage=..., each starting from the previous one's checkpoint):"]
    for path in sorted((conf / "model").glob("*.yaml")):
        data = OmegaConf.load(path)
        datasets = sorted(p.stem for p in (conf / "dataset").glob("*.yaml")
                          if OmegaConf.load(p).get("model") == path.stem)
        lines.append(f"  {path.stem:18s} {' -> '.join(data.get('stages', []))}   datasets: {', '.join(datasets)}")
    visible = {g: o for g, o in _groups(conf).items()
               if g not in ("model", "task", "dataset") and not g.startswith(("model_stages", "model_sizes", "model_tasks", "hydra"))}
    lines += ["", "Other groups:"]
    for group, options in sorted(visible.items()):
        shown = [o for o in options if not o.startswith("default_for_") and not (group == "stage" and o == "default")]
        lines.append(f"  {group:18s} {', '.join(shown)}")
    lines += ["", "Common overrides:",
              "  stage.init_from=<run>/checkpoints/last.ckpt   start a stage from the previous stage's checkpoint",
              "  task.ckpt_path=<ckpt>                         the checkpoint an inference task uses",
              "  ckpt_path=last hydra.run.dir=<run dir>        resume an interrupted run",
              "  size=paper  trainer=gpu  strategy=ddp  logger=wandb  seed=<int>  debug=true (tracebacks)",
              "  model.optimizer.lr=<lr>  trainer.max_epochs=<n>  dataset.root=<folder>",
              "  -m <sweep> [hydra/launcher=slurm]            one job per combination",
              "", "python run.py --cfg job prints the composed config (every key). Hydra's own flags follow.", ""]
    return "\n".join(lines)
