"""condsynth's one entrypoint: compose the config, validate, seed and run the chosen task.

    python run.py                                  # pix2pixHD, stage global, synthetic scenes, small sizes
    python run.py stage=local stage.init_from=outputs/train/pix2pixhd_global/latest/checkpoints/last.ckpt
    python run.py task=summary model=pix2pixhd stage=local dataset=cityscapes size=paper
    python run.py -m model.optimizer.lr=1e-4,2e-4  # a sweep; add hydra/launcher=slurm for a cluster

Errors of the project's own are one ``error: ...`` line (exit code 2); ``debug=true`` or ``HYDRA_FULL_ERROR=1``
shows the traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from tasks.cli import (
    USER_ERRORS,
    check_overrides,
    checkpoint_overrides,
    debug_requested,
    fail,
    link_latest,
    previous_latest,
    project_help,
    quiet_noise,
    remove_unused_run_dir,
    restore_latest,
)
from tasks.config import register_resolvers, validate_config
from tasks.run_dir import prepare_run_dir, resolve_link_overrides
from tasks.threads import apply_threads, passive_wait

register_resolvers()
log = logging.getLogger("condsynth")


def lightning_logs_to_stderr() -> None:
    """What Lightning does when it is imported before logging is configured: its own INFO handler on stderr, not
    propagated. run.py imports it only after the config checks (so config errors come in under a second), by
    which time Hydra (or a SLURM job's submitit) has configured logging; this keeps Lightning's lines (devices, DDP
    members, the model summary) on stderr, where they were."""
    if "pytorch_lightning" in sys.modules:  # imported already: it made its own choice
        return
    for name in ("pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler())
        logger.propagate = False



_UNMOVED = object()  # the latest link was not touched yet


def stopped_at_start(cfg: DictConfig, err: BaseException, debug: bool, latest_before: Any = _UNMOVED) -> None:
    """A run that stopped before it trained: remove what it created in its run folder, put the ``latest`` link back
    where it was (``latest_before``: its target before this run, None for no link), and report the error in one
    line."""
    run_dir = cfg.paths.get("run_dir") if "paths" in cfg else None
    if remove_unused_run_dir(run_dir) and latest_before is not _UNMOVED:
        restore_latest(cfg, latest_before)
    fail(err, debug)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    debug = debug_requested() or bool(cfg.get("debug"))
    try:
        if "paths" in cfg:  # the lock (already taken by tasks.run_dir.RecordRunDir for a single run)
            prepare_run_dir(cfg.paths.run_dir)
    except USER_ERRORS as err:
        fail(err, debug)  # another run holds the folder: touch nothing in it
    try:
        validate_config(cfg)
    except USER_ERRORS as err:
        stopped_at_start(cfg, err, debug)
    latest_before = previous_latest(cfg)
    link_latest(cfg)
    lightning_logs_to_stderr()  # in main: a SLURM job runs this function alone (submitit pickles it)
    import pytorch_lightning as pl  # here, not at the top: a config error above is shown without importing it (~10 s)

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    apply_threads(cfg)  # threads=auto: the CPUs this process may use, less the DataLoader workers
    task = hydra.utils.get_method(cfg.task.fn)
    try:
        return task(cfg)
    except USER_ERRORS as err:  # a data error at start-up leaves no run folder (a later one keeps the run's files)
        stopped_at_start(cfg, err, debug, latest_before)
    except InstantiationException as err:  # a constructor's own clear error, wrapped by Hydra
        if not isinstance(err.__cause__, USER_ERRORS):
            raise
        stopped_at_start(cfg, err.__cause__, debug, latest_before)


def entry(argv: list[str]) -> Any:
    passive_wait()  # before torch loads OpenMP
    quiet_noise()
    if "--help" in argv or "-h" in argv:
        print(project_help())
    elif "--hydra-help" not in argv and not any(a.startswith(("--cfg", "-c", "--info", "--shell")) for a in argv):
        try:
            sys.argv[1:] = resolve_link_overrides(sys.argv[1:])  # hydra.run.dir=<run>/latest: the real folder
            sys.argv += checkpoint_overrides(argv)  # inference tasks: model and stage of the checkpoint
            check_overrides(sys.argv[1:])
        except USER_ERRORS as err:
            fail(err, debug_requested(argv))
    return main()


if __name__ == "__main__":
    entry(sys.argv[1:])
