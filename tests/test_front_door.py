"""The front door: every error of the project's own is one `error:` line on stderr with exit code 2, no traceback
(debug=true shows it), no run folder for a run that fails at start-up, the error kept in the run's log otherwise;
mistyped keys and options get the closest spellings; --help starts with the project's own help."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tasks.cli import check_overrides, project_help
from tasks.config import ConfigError
from tests.conftest import REPO_ROOT


def _run(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1", **(env_extra or {}))
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# (overrides, a fragment of the message, whether the run gets as far as a run folder)
CASES = [
    (["stage=decoder"], "stage 'decoder' does not belong to model 'pix2pixhd'", False),
    (["task=test"], "task=test needs task.ckpt_path=", False),
    (["task=test", "task.ckpt_path=/no/such.ckpt"], "task.ckpt_path=/no/such.ckpt does not exist", False),
    (["stage=local"], "stage.init_from is not set", False),
    (["trainer.max_stepz=5"], "did you mean trainer.max_steps", False),
    (["model=foo"], "model=foo is not an option", False),
    (["dataset.root=/data/cityscapes"], "dataset=synthetic_scenes generates its data and reads no folder: add "
     "dataset=<cityscapes|pix2pixhd_folders>", False),
    (["model=lst", "dataset=coco_wikiart", "dataset.content_root=/no/images", "dataset.style_root=/no/images"],
     "dataset.content_root=/no/images does not exist", False),  # a data error at start-up: no folder either
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "fragment", "makes_run_dir"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_errors_are_one_line(args: list[str], fragment: str, makes_run_dir: bool, tmp_path) -> None:
    run_dir = tmp_path / "run"
    proc = _run([*args, f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and fragment in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert os.path.isdir(run_dir) == makes_run_dir
    if makes_run_dir:  # the run's log keeps the error
        assert fragment in (run_dir / "run.log").read_text()


@pytest.mark.slow
def test_a_data_error_at_start_up_keeps_the_users_files_and_the_latest_link(tmp_path) -> None:
    """A start-up data error removes only what the run created: a hydra.run.dir that held the user's notes keeps
    them; in the default layout no run folder is left and ``latest`` still points at the previous run."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.log").write_text("my notes")
    proc = _run(["dataset=pix2pixhd_folders", "dataset.root=/missing", f"hydra.run.dir={mine}"])
    assert proc.returncode == 2 and len(_error_lines(proc.stderr)) == 1, proc.stderr[-2000:]
    assert sorted(os.listdir(mine)) == ["notes.log"] and (mine / "notes.log").read_text() == "my notes"

    runs = tmp_path / "outputs" / "train" / "pix2pixhd_global"
    (runs / "2026-01-01_10-00-00").mkdir(parents=True)
    (runs / "latest").symlink_to("2026-01-01_10-00-00")
    proc = _run(["dataset=pix2pixhd_folders", "dataset.root=/missing", f"paths.output_dir={tmp_path / 'outputs'}"])
    assert proc.returncode == 2 and "dataset root /missing does not exist" in proc.stderr, proc.stderr[-2000:]
    assert sorted(os.listdir(runs)) == ["2026-01-01_10-00-00", "latest"]
    assert os.readlink(runs / "latest") == "2026-01-01_10-00-00"


@pytest.mark.slow
def test_a_second_run_in_a_held_run_folder_stops_with_one_line(tmp_path) -> None:
    """Another run holds the folder: the second stops before Hydra writes anything there (its .hydra/ stays the
    first run's) with one line naming the folder and the holder."""
    run_dir = tmp_path / "run"
    hold = ("import sys, time; sys.path.insert(0, sys.argv[1]); from tasks.run_dir import lock_run_dir; "
            "lock_run_dir(sys.argv[2]); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold, REPO_ROOT, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "overrides.yaml").write_text("- the first run\n")
        proc = _run([f"hydra.run.dir={run_dir}", "trainer.max_steps=1"])
    finally:
        holder.kill()
        holder.wait()
    errors = _error_lines(proc.stderr)
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert f"run folder {run_dir} is in use by pid {holder.pid} on" in errors[0]
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == "- the first run\n"
    assert sorted(os.listdir(run_dir)) == [".hydra", ".lock"]


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path) -> None:
    proc = _run(["stage=decoder", "debug=true", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


@pytest.mark.slow
def test_help_starts_with_the_project_help() -> None:
    proc = _run(["--help"])
    assert proc.returncode == 0
    assert proc.stdout.startswith("condsynth:")
    assert "global -> local -> joint" in proc.stdout and "decoder -> transform" in proc.stdout
    assert "default_for_" not in proc.stdout and "--multirun" in proc.stdout


def test_check_overrides_suggests_the_closest_spellings() -> None:
    with pytest.raises(ConfigError, match=r"did you mean trainer\.max_steps"):
        check_overrides(["trainer.max_stepz=5"])
    with pytest.raises(ConfigError, match=r"did you mean model\.optimizer\.lr\b"):
        check_overrides(["model=lst", "model.optimizer.lrr=1"])
    with pytest.raises(ConfigError, match=r"did you mean stage=global"):
        check_overrides(["stage=globl"])
    with pytest.raises(ConfigError, match=r"write \+trainer\.totally_new"):
        check_overrides(["trainer.totally_new=1"])
    with pytest.raises(ConfigError, match=r"logger=wandbb is not an option"):
        check_overrides(["-m", "logger=csv,wandbb"])
    # valid spellings, new keys with +, sweeps and Hydra's own keys pass
    check_overrides(["model=lst", "stage=transform", "model.optimizer.lr=1e-4,2e-4", "+trainer.new_key=1",
                     "hydra.run.dir=/tmp/x", "dataset.load_size=32", "task=test", "task.ckpt_path=x"])


def test_project_help_lists_every_task_and_model() -> None:
    text = project_help()
    for name in ("train", "test", "summary", "stylize", "cluster_features", "pix2pixhd", "lst"):
        assert f"  {name} " in text


def test_inference_tasks_take_model_and_stage_from_the_checkpoint(tmp_path) -> None:
    import torch

    from tasks.cli import checkpoint_overrides

    ckpt = tmp_path / "joint.ckpt"
    torch.save({"state_dict": {}, "condsynth": {"model": "pix2pixhd", "stage": "joint"}}, ckpt)
    assert checkpoint_overrides(["task=test", f"task.ckpt_path={ckpt}"]) == ["model=pix2pixhd", "stage=joint"]
    assert checkpoint_overrides(["task=test", f"task.ckpt_path={ckpt}", "stage=joint"]) == ["model=pix2pixhd"]
    with pytest.raises(ConfigError, match=r"stage 'joint' checkpoint, but stage=local was given"):
        checkpoint_overrides(["task=test", f"task.ckpt_path={ckpt}", "stage=local"])
    with pytest.raises(ConfigError, match=r"model 'pix2pixhd' checkpoint, but model=lst was given"):
        checkpoint_overrides(["task=stylize", f"task.ckpt_path={ckpt}", "model=lst"])
    assert checkpoint_overrides(["task=test", f"task.ckpt_path={tmp_path / 'missing.ckpt'}"]) == []
    # LST's level shapes the networks: it comes from the checkpoint's stored config too (conf/model/lst.yaml)
    r31 = tmp_path / "r31.ckpt"
    torch.save({"state_dict": {}, "condsynth": {"model": "lst", "stage": "transform",
                                                "config": {"model": {"level": "r31"}}}}, r31)
    assert checkpoint_overrides(["task=stylize", f"task.ckpt_path={r31}"]) == [
        "model=lst", "stage=transform", "model.level=r31"]
    with pytest.raises(ConfigError, match=r"model.level 'r31' checkpoint, but model.level=r41 was given"):
        checkpoint_overrides(["task=stylize", f"task.ckpt_path={r31}", "model.level=r41"])


def test_latest_points_at_the_newest_run_of_a_task_model_and_stage(tmp_path, make_config) -> None:
    from tasks.cli import link_latest

    folder = tmp_path / "outputs" / "train" / "pix2pixhd_global"
    for name in ("2026-01-01_10-00-00", "2026-01-01_11-00-00"):
        (folder / name).mkdir(parents=True)
        assert link_latest(make_config(run_dir=folder / name)) == str(folder / "latest")
        assert os.readlink(folder / "latest") == name and (folder / "latest").resolve() == (folder / name).resolve()
    # a run dir chosen by hand (not <task>/<model>_<stage>/<time>) gets no link next to it
    assert link_latest(make_config(run_dir=tmp_path / "mine")) is None
    assert not (tmp_path / "latest").exists()


def test_resuming_with_other_settings_warns_with_each_difference(make_config, tmp_path, caplog) -> None:
    import logging

    import torch

    from lightning_modules.factory import build_module, resolved_config
    from tasks.train import warn_changed_settings

    cfg = make_config()
    ckpt = str(tmp_path / "last.ckpt")
    torch.save({"state_dict": build_module(cfg).state_dict(),
                "condsynth": {"model": "pix2pixhd", "stage": "global", "config": resolved_config(cfg)}}, ckpt)
    with caplog.at_level(logging.WARNING):
        assert warn_changed_settings(make_config(), ckpt) == []
        changed = warn_changed_settings(make_config("model.optimizer.lr=1e-3", "trainer.max_epochs=3"), ckpt)
    assert changed == ["model.optimizer.lr: 0.0002 -> 0.001", "trainer.max_epochs: 1 -> 3"]
    assert "model.optimizer.lr: 0.0002 -> 0.001" in caplog.text


def test_a_resume_keeps_the_original_hydra_record() -> None:
    from lightning_modules.composition import _output_subdir

    assert _output_subdir(None, "t") == ".hydra"
    assert _output_subdir("last", "2026-01-01_10-00-00") == ".hydra/resume_2026-01-01_10-00-00"


def test_progress_bars_show_on_a_terminal_and_stay_quiet_otherwise(monkeypatch) -> None:
    import io

    from tasks.inference import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for terminal in (False, True):
        stream = Terminal() if terminal else io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        assert list(progress(range(5), "encoding", unit="batch")) == [0, 1, 2, 3, 4]
        assert ("encoding" in stream.getvalue() and "/5 [" in stream.getvalue()) == terminal


@pytest.mark.parametrize("args", [["model=foo"], ["trainer.max_stepz=5"], ["stage=decoder"], ["stage=local"]],
                         ids=lambda a: " ".join(a))
def test_config_errors_come_before_torch_is_imported(args: list[str], tmp_path) -> None:
    """Importing torch and Lightning takes most of the start-up (5-15 s here): a config error is shown first."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['run.py', *{args!r}, 'hydra.run.dir={tmp_path / 'run'}']\n"
            "try:\n"
            "    runpy.run_path('run.py', run_name='__main__')\n"
            "except SystemExit as exit:\n"
            "    print('exit', exit.code, 'torch' in sys.modules, 'pytorch_lightning' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert "exit 2 False False" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert len(_error_lines(proc.stderr)) == 1
