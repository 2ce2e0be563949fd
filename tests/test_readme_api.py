"""docs/python-api.md "Use a trained model from Python" (linked from the README): every example runs, on tiny checkpoints of each paper put where the
example's path points (so the examples cannot go stale)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from lightning_modules.factory import build_module
from tests.conftest import TINY_EDN, TINY_LST, TINY_X2FACE, compose_config

README = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
SECTION = "## Use a trained model from Python"
#: the run folder of each example's checkpoint -> the tiny config that builds it
CONFIGS = {"pix2pixhd_global": ([], True), "lst_transform": ([*TINY_LST, "model.level=r31", "stage=transform"], False),
           "edn_global": (TINY_EDN, False), "x2face_photometric": (TINY_X2FACE, False)}

pytestmark = pytest.mark.usefixtures("one_thread")


def examples() -> list[str]:
    text = README.read_text()
    body = text[text.index(SECTION):]
    end = body.find("\n## ", len(SECTION))
    body = body if end < 0 else body[:end]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_section_has_one_example_per_paper() -> None:
    found = [re.search(r'load\("outputs/train/(\w+)/', code).group(1) for code in examples()]
    assert sorted(found) == sorted(CONFIGS)


@pytest.mark.parametrize("code", examples(), ids=lambda c: re.search(r"outputs/train/(\w+)/", c).group(1))
def test_readme_example_runs(code: str, tmp_path, monkeypatch) -> None:
    run = re.search(r'load\("(outputs/train/(\w+)/latest/checkpoints/last.ckpt)"\)', code)
    overrides, tiny = CONFIGS[run.group(2)]
    torch.manual_seed(0)
    module = build_module(compose_config(overrides, tmp_path / "build", tiny=tiny), for_inference=True)
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    path = tmp_path / run.group(1)
    path.parent.mkdir(parents=True)
    torch.save(ckpt, path)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, f"README:{run.group(2)}", "exec"), scope)  # noqa: S102 - the README's own example
    out = next(scope[k] for k in ("image", "out", "frames") if k in scope)
    shape = re.search(r"# \[([\d, ]+)\]", code).group(1)
    assert tuple(out.shape) == tuple(int(v) for v in shape.split(","))
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
