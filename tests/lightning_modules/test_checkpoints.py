"""A checkpoint is data, never code (issue "Safe by default" §1-2): every entry point reads through the one safe
reader and rebuilds configs from conf/. The payloads here are harmless: each would create a marker file."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import zipfile

import pytest
import torch

from lightning_modules.checkpoints import (
    DISK_READS,
    CheckpointError,
    UnsafeCheckpointError,
    read_checkpoint,
    read_record,
)
from lightning_modules.factory import UnsafeConfigError, build_module, check_targets
from lightning_modules.loading import load
from tests.conftest import REPO_ROOT, compose_config


class _WritesMarker:
    """Unpickling this calls ``Path(marker).touch()``: what a crafted checkpoint could do with any callable."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _pickle_payload(tmp_path) -> tuple[str, pathlib.Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "payload.ckpt"
    torch.save({"state_dict": {}, "condsynth": {"model": "pix2pixhd", "stage": "global"},
                "extra": _WritesMarker(str(marker))}, path)
    return str(path), marker


def _module_checkpoint(tmp_path, name: str = "ok.ckpt", **meta_changes) -> str:
    module = build_module(compose_config([], tmp_path / "run"), for_inference=True)
    ckpt = {"state_dict": module.state_dict(), "global_step": 3}
    module.on_save_checkpoint(ckpt)
    for key, value in meta_changes.items():
        ckpt["condsynth"][key] = value
    path = tmp_path / name
    torch.save(ckpt, path)
    return str(path)


def test_a_pickled_object_is_refused_by_every_entry_point(tmp_path) -> None:
    from tasks.resume import resolve_resume_path
    from tasks.studio.models import checkpoint_config

    path, marker = _pickle_payload(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match=r"refused .*payload.ckpt: it is not weights-only safe"):
        read_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError):
        load(path)
    # stage.init_from: the stage's checkpoint is read when the module is built
    with pytest.raises(UnsafeCheckpointError):
        build_module(compose_config(["stage=local", f"stage.init_from={path}"], tmp_path / "local"))
    # ckpt_path (resume): refused, never skipped for another checkpoint of the folder
    cfg = compose_config([f"ckpt_path={path}"], tmp_path / "resume")
    with pytest.raises(UnsafeCheckpointError):
        resolve_resume_path(cfg)
    # the studio's checkpoint
    with pytest.raises(UnsafeCheckpointError):
        checkpoint_config(path, compose_config(["task=studio", f"task.ckpt_path={path}"], tmp_path / "s"),
                          {"pix2pixhd": "tasks.pix2pixhd.studio.Pix2PixHDPanel"})
    assert not marker.exists()


@pytest.mark.slow
def test_the_command_line_refuses_it_in_one_line(tmp_path) -> None:
    path, marker = _pickle_payload(tmp_path)
    out = subprocess.run([sys.executable, "run.py", "task=predict", f"task.ckpt_path={path}",
                          f"hydra.run.dir={tmp_path / 'run'}", "dataset.predict_label_dir=" + str(tmp_path)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert out.returncode == 2 and len(lines) == 1 and "not weights-only safe" in lines[0], out.stderr[-2000:]
    assert not marker.exists()


def _zipimport_checkpoint(tmp_path) -> tuple[str, pathlib.Path]:
    """A weights-only-safe checkpoint whose own zip carries a Python module, and whose stored model config asks
    Hydra to import it (``zipimport.zipimporter.load_module`` passes hydra-core 1.3.8's blocklist)."""
    marker = tmp_path / "pwned_zip"
    path = _module_checkpoint(tmp_path, "zipimport.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["condsynth"]["config"]["model"] = {
        "_target_": "zipimport.zipimporter.load_module",
        "_args_": [{"_target_": "zipimport.zipimporter", "_args_": [f"{path}/zipimport"]}, "evil"],
    }
    torch.save(ckpt, path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("zipimport/evil.py", f"open({str(marker)!r}, 'w').write('x')\n")  # torch's archive folder
    return path, marker


def test_a_stored_target_outside_the_allowlist_is_refused(tmp_path) -> None:
    from tasks.cli import checkpoint_overrides
    from tasks.studio.models import checkpoint_config

    path, marker = _zipimport_checkpoint(tmp_path)
    read_checkpoint(path)  # weights-only safe: it loads as data
    with pytest.raises(UnsafeConfigError, match=r"model\._target_='zipimport\.zipimporter\.load_module' is not "
                                                  r"allowed"):
        load(path)
    with pytest.raises(UnsafeConfigError):
        checkpoint_config(path, compose_config(["task=studio", f"task.ckpt_path={path}"], tmp_path / "s"),
                          {"pix2pixhd": "tasks.pix2pixhd.studio.Pix2PixHDPanel"})
    with pytest.raises(UnsafeConfigError):  # the command line stops before Hydra composes anything
        checkpoint_overrides(["task=predict", f"task.ckpt_path={path}"])
    assert not marker.exists()


def test_the_allowlist() -> None:
    check_targets({"a": {"_target_": "networks.pix2pixhd.GlobalGenerator"}, "b": [{"_target_": "torch.optim.Adam"}]})
    for bad in ("os.system", "subprocess.run", "builtins.eval", "networks.x;import os", "torchvision.io.read_file",
                "pathlib.Path.write_text", "numpy.load"):
        with pytest.raises(UnsafeConfigError, match="is not allowed"):
            check_targets({"net": {"layers": [{"_target_": bad}]}})


def test_stored_values_never_reach_the_command_line_as_code(tmp_path) -> None:
    from tasks.cli import checkpoint_overrides, safe_override

    weird = {"networks": {"global": {"ngf": 6, "norm": "${oc.env:HOME}"}, "local": {"norm": "a,b"}},
             "feat_num": "x y", "n_clusters": "[1]"}
    cfg = compose_config([], tmp_path / "run")
    stored = dict(read_record(_module_checkpoint(tmp_path)).config)
    model = dict(stored["model"])
    for key, value in weird.items():
        model[key] = value if not isinstance(value, dict) else {**model[key], **{
            k: {**model[key][k], **v} for k, v in value.items()}}
    path = _module_checkpoint(tmp_path, "weird.ckpt", config={**stored, "model": model})
    added = checkpoint_overrides(["task=predict", f"task.ckpt_path={path}"])
    assert "model.networks.global.ngf=6" in added
    assert not [a for a in added if any(c in a for c in "${}[], ")], added
    assert added[:2] == ["model=pix2pixhd", "stage=global"] and cfg.model.networks["global"].ngf != 6
    for key, value in (("hydra.run.dir", "x"), ("+model.x", 1), ("task.fn", "os.system"), ("model.a._target_", "x"),
                       ("model.a", "${x}"), ("model.a", "[1]"), ("model.a", "1,2"), ("model.a", "a b")):
        assert safe_override(key, value) is None


def test_each_file_is_read_once_and_records_are_typed(tmp_path) -> None:
    from tasks.cli import checkpoint_overrides

    path = _module_checkpoint(tmp_path)
    real = os.path.realpath(path)
    before = DISK_READS[real]
    checkpoint_overrides(["task=predict", f"task.ckpt_path={path}"])
    module = load(path)
    record = read_record(path)
    assert DISK_READS[real] - before == 1
    assert (record.model, record.stage, record.step) == ("pix2pixhd", "global", 3)
    assert module.checkpoint_record.path == path
    os.utime(path, ns=(1, 1))  # a changed file is read again
    read_record(path)
    assert DISK_READS[real] - before == 2


def test_unreadable_files_get_one_line(tmp_path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(text)
    good = _module_checkpoint(tmp_path)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(pathlib.Path(good).read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(truncated)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.ckpt")
