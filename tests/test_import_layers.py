"""Imports point one way: run.py -> tasks -> lightning_modules, datamodules -> networks, losses; a paper's tasks
never import another paper's, and the shared tasks import none of them (scripts/import_graph.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import script_module

REPO = Path(__file__).resolve().parents[1]


def _graph_module():
    return script_module("import_graph")


def test_imports_point_one_way() -> None:
    graph_module = _graph_module()
    graph = graph_module.import_graph(REPO)
    assert graph["run"] == {"tasks"}
    assert not graph["networks"] and not graph["losses"], "networks and losses are plain nn.Modules"
    assert graph_module.upward_edges(graph) == []


def test_no_module_import_cycles(tmp_path) -> None:
    graph_module = _graph_module()
    assert graph_module.module_cycles(REPO) == []
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                             "    from tasks.b import B\n")
    (tmp_path / "tasks" / "b.py").write_text("from tasks.a import A\n")
    (tmp_path / "run.py").write_text("import tasks\n")
    assert graph_module.module_cycles(tmp_path) == [["tasks.a", "tasks.b"]]


def test_an_upward_import_is_reported(tmp_path) -> None:
    graph_module = _graph_module()
    (tmp_path / "networks").mkdir()
    (tmp_path / "networks" / "bad.py").write_text("from tasks.train import train\n")
    (tmp_path / "run.py").write_text("import tasks\n")
    graph = graph_module.import_graph(tmp_path)
    assert graph_module.upward_edges(graph) == [("networks", "tasks")]
