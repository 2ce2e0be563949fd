"""The docs' tables (README.md's papers table; docs/configuration.md's groups, tasks and --help; each paper page's
stages, datasets, recipes and tasks) equal what scripts/docs_tables.py generates from conf/: a new option, stage,
dataset or task in conf/ without `python scripts/docs_tables.py` fails here, and so does a hand edit of a table."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import script_module

REPO = Path(__file__).resolve().parents[1]


def _tables_module():
    return script_module("docs_tables")


def test_docs_tables_check_passes() -> None:
    proc = subprocess.run([sys.executable, "scripts/docs_tables.py", "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_page_with_a_table_is_found() -> None:
    module = _tables_module()
    pages = {str(p.relative_to(REPO)) for p in module.markdown_files() if "<!-- table:" in p.read_text()}
    assert {"README.md", "docs/configuration.md", *(f"docs/papers/{p}.md" for p in ("pix2pixhd", "lst", "edn",
                                                                                   "x2face"))} <= pages


def test_a_stale_table_is_reported(tmp_path) -> None:
    """A copy of the docs with one row edited by hand (a stage renamed) and one conf option missing from a table:
    --check's function names both tables and writes nothing."""
    module = _tables_module()
    for entry in module.PAGES:
        source = REPO / entry
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / entry)
    lst = tmp_path / "docs" / "papers" / "lst.md"
    lst.write_text(lst.read_text().replace("| `transform` |", "| `transfrom` |", 1))
    config = tmp_path / "docs" / "configuration.md"
    config.write_text(config.read_text().replace(", `wandb`", "", 1))
    before = lst.read_text()
    assert module.update(tmp_path, write=False) == ["docs/configuration.md: groups", "docs/papers/lst.md: stages:lst"]
    assert lst.read_text() == before
    assert module.update(tmp_path, write=True) and module.update(tmp_path, write=False) == []


PAPER_FILES = {
    "pix2pixhd": ["lightning_modules/pix2pixhd.py", "networks/pix2pixhd.py", "datamodules/pix2pixhd/__init__.py",
                  "tasks/pix2pixhd/__init__.py"],
    "lst": ["lightning_modules/lst.py", "networks/lst.py", "datamodules/lst/__init__.py", "tasks/lst/__init__.py"],
    "edn": ["lightning_modules/edn.py", "networks/edn.py", "datamodules/edn/__init__.py", "tasks/edn/__init__.py"],
    "x2face": ["lightning_modules/x2face.py", "lightning_modules/face_id.py", "networks/x2face.py",
               "datamodules/x2face/__init__.py", "tasks/x2face/__init__.py"],
}
PACKAGES = ["tasks", "datamodules", "networks", "lightning_modules", "losses"]


def _docstring(path: Path) -> str:
    import ast

    return ast.get_docstring(ast.parse(path.read_text())) or ""


def test_each_papers_files_link_its_page() -> None:
    for paper, files in PAPER_FILES.items():
        assert (REPO / "docs" / "papers" / f"{paper}.md").is_file()
        for name in files:
            assert f"docs/papers/{paper}.md" in _docstring(REPO / name), name


def test_package_docstrings_name_every_paper() -> None:
    for package in PACKAGES:
        text = _docstring(REPO / package / "__init__.py")
        for paper in ("pix2pixHD", "Linear Style Transfer", "Everybody Dance Now", "X2Face", "face_id"):
            assert paper in text, f"{package}/__init__.py does not name {paper}"
