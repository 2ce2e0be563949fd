"""Shared test fixtures: compose the real Hydra config with tiny sizes, in a temporary run dir."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tasks.config import compose_config as compose_real_config
from tasks.threads import apply_threads

REPO_ROOT = str(Path(__file__).resolve().parents[1])


def script_module(name: str):
    """``scripts/<name>.py`` imported as a module (the scripts folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(REPO_ROOT) / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

# Settings every tiny run shares: the models' own size=tiny (conf/model_sizes/<model>/tiny.yaml), one short epoch,
# samples every step, CSV logs.
_TINY_RUN = [
    "size=tiny",
    "trainer=debug",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "callbacks.sample_grid.every_n_steps=1",
    "logger=csv",
]

# Tiny pix2pixHD (the default model): G1 stride 4 (local: 8), 32x32 images (16x16 in stage global).
TINY_PIX2PIXHD = list(_TINY_RUN)
# Tiny LST: only images shrink (16x16), random VGGs. Use with compose_config(..., tiny=False).
TINY_LST = ["model=lst", *_TINY_RUN]
# Tiny Everybody Dance Now: 32x64 frames (16x32 in stage global), random VGG.
TINY_EDN = ["model=edn", *_TINY_RUN]
# Tiny X2Face and its identity network: 32x32 faces, 4 identities.
TINY_X2FACE = ["model=x2face", *_TINY_RUN]
TINY_FACE_ID = ["model=face_id", *_TINY_RUN]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the test, restored after: tiny tensors gain nothing from threads, and on a
    busy 2-core machine two spinning threads make each op 5-20x slower (a module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("CONDSYNTH_CACHE", str(tmp_path_factory.getbasetemp() / "condsynth-cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    apply_threads({"threads": "auto"}, announce=False, export=False)  # run.py's choice: the CPUs this process may use


def compose_config(overrides: Sequence[str] = (), run_dir: str | os.PathLike | None = None,
                   tiny: bool = True) -> DictConfig:
    """The real config, composed as run.py would, with ``paths.run_dir`` pointing at ``run_dir``."""
    # A group chosen in ``overrides`` (e.g. callbacks=none, trainer=gpu) replaces the tiny settings of that group.
    chosen = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "." not in o.split("=", 1)[0]}
    base = [o for o in (TINY_PIX2PIXHD if tiny else []) if o.split("=", 1)[0].split(".")[0].lstrip("+~") not in chosen]
    return compose_real_config(base + list(overrides), run_dir)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., DictConfig]:
    def _make(*overrides: str, run_dir: str | os.PathLike | None = None, tiny: bool = True) -> DictConfig:
        return compose_config(overrides, run_dir or tmp_path / "run", tiny)

    return _make
