"""Every documented command is true: each ``python run.py ...`` line of README.md and docs/ (code blocks, with
continuation lines joined and shell variables of the same block filled in, and inline code spans) is checked the
way run.py checks it before anything runs: ``tasks.cli.check_overrides`` (unknown groups, options and keys, with the
closest spellings), ``tasks.cli.checkpoint_overrides`` (an inference task's model and stage from its checkpoint),
the composed config (Hydra's own keys included) and ``tasks.config.validate_config``. Nothing trains and no data
is read: a renamed key or option in any page fails here.

Placeholders are replaced, each for the reason in ``PLACEHOLDERS``; the commands that cannot be checked this way
are in ``SKIPPED`` with their reason.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from tasks.cli import check_overrides, checkpoint_overrides
from tasks.config import CONF_DIR, ConfigError, validate_config

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

#: what each kind of placeholder becomes, and why
PLACEHOLDERS = {
    "checkpoint": "task.ckpt_path=, stage.init_from=, model.identity_weights= (a placeholder such as <run>/..., $CKPT "
                  "or ..., or a path under outputs/ that a training run would write): a fixture checkpoint that "
                  "records the command's model and the stage its text names (else the model's first stage)",
    "input": "any other value with a placeholder (<video or frame folder>, /path/..., $VAR): a path in a temporary "
             "folder; the config is checked, the user's file is not read",
    "stage": "stage=<stage>: every stage of the command's model",
    "run dir": "hydra.run.dir=<run dir> (or .../latest): a temporary folder",
    "optional": "[key=value] marks an optional override: checked with it",
}
#: commands (a unique fragment) that cannot be checked here, and why
SKIPPED = {
    "model=<paper>": "a template for a paper that does not exist yet (docs/adding-a-paper.md)",
}
#: commands (a unique fragment) that fail today for a reason outside the docs: xfail(strict), so a fix shows
KNOWN_STALE: dict[str, str] = {}

CKPT_KEYS = ("task.ckpt_path", "stage.init_from", "model.identity_weights")
_PLACEHOLDER = re.compile(r"<[^<>]*>|\$\{?\w+\}?|^\.\.\.$|/path/")


def _location(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO)}:{line}"


def collect(path: Path) -> list[tuple[str, str]]:
    """(file:line, command) for each ``python run.py`` command of a Markdown file."""
    found: list[tuple[str, str]] = []
    lines = path.read_text().splitlines()
    in_code, shell, variables, prose = False, False, {}, []
    i = 0
    while i < len(lines):
        raw = lines[i]
        if raw.lstrip().startswith("```"):
            in_code, variables = not in_code, {}
            shell = in_code and raw.strip()[3:].strip() in ("", "bash", "sh", "shell", "console")
            i += 1
            continue
        if in_code and not shell:  # ```text (printed output such as --help), ```python: not commands
            i += 1
            continue
        if not in_code:
            prose.append((i + 1, raw))
            i += 1
            continue
        start, text = i + 1, raw.strip()
        while text.endswith("\\") and i + 1 < len(lines):  # continuation lines
            i += 1
            text = text[:-1] + " " + lines[i].strip()
        assignment = re.match(r"^([A-Z_][A-Z0-9_]*)=(\S+)$", text)
        if assignment:
            variables[assignment[1]] = assignment[2]
        elif text.startswith("python run.py"):
            for name, value in variables.items():
                text = re.sub(rf"\${name}\b", value, text)
            found.append((_location(path, start), text))
        i += 1
    # inline code spans of the prose (and tables); a span may wrap onto the next line
    joined = "\n".join(t for _, t in prose)
    offsets = [n for n, _ in prose]
    for match in re.finditer(r"`(python\s+run\.py\b[^`]*)`", joined):
        line = offsets[joined.count("\n", 0, match.start())]
        found.append((_location(path, line), " ".join(match[1].split())))
    return found


def all_commands() -> list[tuple[str, str]]:
    return [c for page in PAGES for c in collect(page)]


def _tokens(command: str) -> list[str]:
    command = re.sub(r"<[^<>]*>", lambda m: m[0].replace(" ", "_"), command)  # <joint run>: one token
    tokens = shlex.split(command, comments=True)[2:]  # after "python run.py"
    out, skip_next = [], False
    for token in tokens:
        if skip_next:
            skip_next = False
            continue
        if token in ("--cfg", "-c", "--package", "-p"):  # Hydra's flags with a value: not overrides
            skip_next = True
            continue
        if token == "..." or (token.startswith("-") and token not in ("-m", "--multirun")):
            continue  # "the rest of the command", or a flag (--help): no override to check
        if token.startswith("[") and token.endswith("]") and "=" in token and "=[" not in token:
            token = token[1:-1]  # [task.format=onnx]: optional
        out.append(token)
    return out


def _fixture_checkpoint(tmp_path: Path, model: str, stage: str) -> str:
    path = tmp_path / "ckpts" / f"{model}_{stage}.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        torch.save({"state_dict": {}, "condsynth": {"model": model, "stage": stage}}, path)
    return str(path)


def _stages(model: str) -> list[str]:
    from omegaconf import OmegaConf

    return list(OmegaConf.load(Path(CONF_DIR) / "model" / f"{model}.yaml").stages)


def _only_model(task: str) -> str | None:
    """The model of a task that runs one model only (task=stylize: lst), as its checkpoint would say."""
    from omegaconf import OmegaConf

    path = Path(CONF_DIR) / "task" / f"{task}.yaml"
    models = OmegaConf.load(path).get("models") if path.is_file() else None
    return str(models[0]) if models is not None and len(models) == 1 else None


def expand(command: str, tmp_path: Path) -> list[list[str]]:
    """The override lists to check for one command (several when it says stage=<stage>)."""
    tokens = _tokens(command)
    given = dict(t.split("=", 1) for t in tokens if "=" in t and not t.startswith(("-", "+", "~")))
    model = given.get("model") or _only_model(given.get("task", "train")) or "pix2pixhd"
    stages = _stages(model)
    runs = []
    for stage_choice in (stages if given.get("stage", "").startswith("<") else [given.get("stage")]):
        args = []
        for token in tokens:
            key, eq, value = token.partition("=")
            if not eq:
                args.append(token)
                continue
            if key == "stage" and value.startswith("<"):
                args.append(f"stage={stage_choice}")
            elif key.lstrip("+") in CKPT_KEYS and (_PLACEHOLDER.search(value) or not Path(value).is_file()):
                named = stage_choice or next((s for s in sorted(stages, key=len, reverse=True) if s in value),
                                             stages[0])
                ckpt_model = "face_id" if key.endswith("identity_weights") else model
                ckpt_stage = _stages("face_id")[0] if ckpt_model == "face_id" else named
                parts = [p for p in re.split(r"[\[\],]", value) if p] if value.startswith("[") else [value]
                paths = [_fixture_checkpoint(tmp_path, ckpt_model, ckpt_stage) for _ in parts]
                args.append(f"{key}=[{','.join(paths)}]" if value.startswith("[") else f"{key}={paths[0]}")
            elif key == "hydra.run.dir":
                args.append(f"hydra.run.dir={tmp_path / 'run'}")
            elif _PLACEHOLDER.search(value):
                args.append(f"{key}={tmp_path / 'input'}" if not value.startswith("[") else
                            f"{key}=[{tmp_path / 'input'}]")
            else:
                args.append(token)
        runs.append(args)
    return runs


def _first_of_sweeps(args: list[str]) -> list[str]:
    out = []
    for arg in args:
        if arg in ("-m", "--multirun"):
            continue
        key, eq, value = arg.partition("=")
        if eq and "," in value and not value.startswith(("[", "{", "'", '"')):
            value = value.split(",")[0]
        out.append(f"{key}{eq}{value}")
    return out


def check_command(args: list[str], tmp_path: Path) -> None:
    """What run.py does before a task runs: the override checks, the checkpoint's model and stage, composition
    (Hydra's own config included, so hydra.launcher.* keys are checked too) and the start-up validation."""
    from hydra import compose, initialize_config_dir

    check_overrides(args)
    args = args + checkpoint_overrides(args)
    overrides = [*_first_of_sweeps(args), f"paths.run_dir={tmp_path / 'run'}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    validate_config(cfg)


COMMANDS = all_commands()


def _params() -> list:
    params = []
    for where, command in COMMANDS:
        stale = next((why for fragment, why in KNOWN_STALE.items() if fragment in command), None)
        marks = [pytest.mark.xfail(strict=True, reason=stale)] if stale else []
        params.append(pytest.param(where, command, marks=marks, id=where))
    return params


@pytest.fixture(scope="module", autouse=True)
def _compose_once_per_choice():
    """check_overrides and checkpoint_overrides compose the config of the group choices alone (read-only): many
    commands share those choices, so each is composed once here (the full config of each command still is)."""
    import functools

    import tasks.cli

    original = tasks.cli.compose_config
    tasks.cli.compose_config = functools.cache(lambda overrides: original(list(overrides)))
    cached = tasks.cli.compose_config
    tasks.cli.compose_config = lambda overrides=(): cached(tuple(overrides))
    yield
    tasks.cli.compose_config = original


def test_the_pages_have_commands() -> None:
    """The collector finds the commands of every paper page (a change to the Markdown shape would hide them)."""
    per_page = {}
    for where, _ in COMMANDS:
        per_page[where.split(":")[0]] = per_page.get(where.split(":")[0], 0) + 1
    for paper in ("pix2pixhd", "lst", "edn", "x2face"):
        assert per_page.get(f"docs/papers/{paper}.md", 0) >= 5, per_page
    assert len(COMMANDS) >= 60


@pytest.mark.slow  # about 1 s a command on a loaded 2-core machine (three config compositions each)
@pytest.mark.parametrize(("where", "command"), _params())
def test_documented_command_composes_and_validates(where: str, command: str, tmp_path) -> None:
    reason = next((why for fragment, why in SKIPPED.items() if fragment in command), None)
    if reason:
        pytest.skip(reason)
    for args in expand(command, tmp_path):
        try:
            check_command(args, tmp_path)
        except Exception as err:  # noqa: BLE001 - the message names the command and its page
            pytest.fail(f"{where}: {command}\n  checked as: python run.py {' '.join(args)}\n  -> "
                        f"{type(err).__name__}: {err}")


def test_a_stale_command_fails(tmp_path) -> None:
    """The check catches what a page can go stale by: a renamed key, option or stage, a stage without its start."""
    for command, message in [("python run.py trainer.max_stepz=5", "did you mean trainer.max_steps"),
                             ("python run.py model=lst stage=tranform", "did you mean stage=transform"),
                             ("python run.py model=x2face stage=joint", "does not belong to model 'x2face'"),
                             ("python run.py stage=local", "stage.init_from is not set"),
                             ("python run.py -m hydra/launcher=slurm hydra.launcher.partitionz=gpu", "partitionz")]:
        with pytest.raises(Exception, match=message) as err:
            for args in expand(command, tmp_path):
                check_command(args, tmp_path)
        assert isinstance(err.value, ConfigError | ValueError) or "partitionz" in str(err.value)
