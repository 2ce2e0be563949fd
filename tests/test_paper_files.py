"""A paper is its own files: no shared config file, and no shared module, names a specific paper.

Shared config files are every file under conf/ except a paper's own: conf/model/<paper>.yaml,
conf/model_stages/<paper>/, conf/model_sizes/<paper>/, datasets (they name their paper in `model:`), experiments and tasks
that list the models they run. Comments may cite a paper as the source of a default value; values may not name
one. The one exception is conf/config.yaml's default model.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tasks.config import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
CONF = Path(CONF_DIR)
# every model of the framework (conf/model)
PAPERS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
PAPER_WORD = re.compile(r"\b(" + "|".join(PAPERS) + r")\b", re.IGNORECASE)
# modules every paper goes through: they must not branch on a paper's name
SHARED_MODULES = ["run.py", "tasks/__init__.py", "tasks/builders.py", "tasks/run_logs.py", "tasks/resume.py",
                  "tasks/inference.py", "tasks/export.py", "tasks/fetch_weights.py", "lightning_modules/factory.py",
                  "lightning_modules/checkpoints.py", "lightning_modules/loading.py", "lightning_modules/bundles.py",
                  "lightning_modules/composition.py", "lightning_modules/inference_io.py",
                  "lightning_modules/schedules.py", "networks/official.py", "tasks/import_official.py",
                  "tasks/config.py", "tasks/train.py",
                  "tasks/evaluate.py", "tasks/summary.py", "lightning_modules/base.py", "lightning_modules/stages.py",
                  "lightning_modules/callbacks.py", "datamodules/base.py", "datamodules/atomic_writes.py",
                  "datamodules/image_grids.py", "losses/conditional_gan.py"]


def _values(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{path}.{k}" if path else str(k), str(k)
            yield from _values(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _values(v, f"{path}[{i}]")
    elif node is not None:
        yield path, str(node)


def _load(path: Path) -> Any:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _paper_owned(path: Path) -> bool:
    rel = path.relative_to(CONF).parts
    if rel[0] in ("model", "model_stages", "model_sizes", "model_tasks", "experiment", "dataset"):
        return True
    if rel[0] == "task":
        return bool(_load(path).get("models"))
    return False


def shared_config_files() -> list[Path]:
    return sorted(p for p in CONF.rglob("*.yaml") if not _paper_owned(p))


def test_the_shared_files_are_the_expected_ones() -> None:
    names = {str(p.relative_to(CONF)) for p in shared_config_files()}
    for expected in ("config.yaml", "task/train.yaml", "task/test.yaml", "task/summary.yaml", "size/demo.yaml",
                     "stage/global.yaml", "trainer/default.yaml", "callbacks/default.yaml", "paths/default.yaml"):
        assert expected in names


@pytest.mark.parametrize("path", shared_config_files(), ids=lambda p: str(p.relative_to(CONF)))
def test_no_shared_config_file_names_a_paper(path: Path) -> None:
    data = _load(path)
    if path == CONF / "config.yaml":  # the project's default model is the one allowed mention
        data["defaults"] = [d for d in data["defaults"] if not (isinstance(d, dict) and "model" in d)]
    named = [(where, value) for where, value in _values(data) if PAPER_WORD.search(value)]
    assert not named, f"{path.relative_to(REPO)} names a paper at {named}: move it into the paper's own files"


def test_a_papers_own_config_files_name_only_that_paper() -> None:
    for paper_dir in (CONF / "model_stages").iterdir():
        for path in paper_dir.glob("*.yaml"):
            data = _load(path)
            assert data.get("model", paper_dir.name) == paper_dir.name, path
    for path in [*(CONF / "model_stages").rglob("*.yaml"), *(CONF / "model_sizes").rglob("*.yaml"),
                 *(CONF / "model_tasks").rglob("*.yaml")]:
        owner = path.relative_to(CONF).parts[1]
        data = _load(path)
        needed = set((data.get("needs_models") or {}).values())  # a stage may name the models it declares it needs
        others = {m.group(1).lower() for _, v in _values(data) for m in PAPER_WORD.finditer(v)} - {owner} - needed
        assert not others, f"{path} names {others}"


@pytest.mark.parametrize("module", SHARED_MODULES)
def test_no_shared_module_branches_on_a_paper_name(module: str) -> None:
    """String constants naming a paper in shared code mean a paper-specific branch (docstrings aside)."""
    tree = ast.parse((REPO / module).read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    named = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
             and PAPER_WORD.search(node.value)]
    assert not named, f"{module} names a paper in {named}"


def test_every_model_config_has_its_own_files() -> None:
    """What docs/adding-a-paper.md lists, for each implemented paper."""
    for paper in (p.stem for p in (CONF / "model").glob("*.yaml")):
        model = _load(CONF / "model" / f"{paper}.yaml")
        assert model["name"] == paper and model["_target_"].startswith(f"lightning_modules.{paper}.")
        assert "module" not in model, "one shape: the model config is the constructor itself"
        assert (CONF / "model_stages" / paper / "default.yaml").is_file()
        for stage in model["stages"]:
            assert (CONF / "model_stages" / paper / f"{stage}.yaml").is_file()
            assert (CONF / "stage" / f"{stage}.yaml").is_file()
        assert (CONF / "dataset" / f"default_for_{paper}.yaml").is_file()
        assert os.path.isfile(REPO / "lightning_modules" / f"{paper}.py")
