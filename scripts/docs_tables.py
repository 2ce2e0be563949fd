"""The docs' tables, generated from ``conf/`` so that they cannot go stale.

    python scripts/docs_tables.py            # rewrite every table in README.md and docs/ from conf/
    python scripts/docs_tables.py --check    # exit 1, naming each table that differs from conf/ (the test suite runs it)

A table sits in a Markdown file between ``<!-- table: NAME -->`` and ``<!-- /table -->``; NAME is one of:

* ``papers``: each model, its stage chain, what it does and its page (README.md);
* ``groups``: every config group and its options (docs/configuration.md);
* ``tasks``: every task, what it does (the first comment of ``conf/task/<task>.yaml``) and the models it runs;
* ``help``: the project's part of ``python run.py --help`` (``tasks.cli.project_help``);
* ``stages:<model>``, ``datasets:<model>``, ``tasks:<model>``, ``experiments:<model>``: a paper's page.

A new paper needs one line in ``PAPERS`` below (its name, what it does, its page); everything else comes from its
config files.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF = REPO_ROOT / "conf"
#: the files that hold tables
PAGES = ("README.md", "docs")

#: model -> (the paper, what it does, its page). The order is the table's.
PAPERS = {
    "pix2pixhd": ("pix2pixHD (Wang et al., CVPR 2018)", "semantic label map (+ instances) -> photo, up to 2048x1024",
                  "docs/papers/pix2pixhd.md"),
    "lst": ("Linear Style Transfer (Li et al., CVPR 2019)", "any photo in the style of any image; video, photo-real",
            "docs/papers/lst.md"),
    "edn": ("Everybody Dance Now (Chan et al., ICCV 2019)", "a source dancer's motion -> a target person's video",
            "docs/papers/edn.md"),
    "x2face": ("X2Face (Wiles et al., ECCV 2018)", "drive a face by another face's video, a head pose or audio",
               "docs/papers/x2face.md"),
    "face_id": ("X2Face's identity network (stand-in for VGG-Face)", "face identity classifier for X2Face's "
                "`identity` stage", "docs/papers/x2face.md"),
    "segmenter": ("pix2pixHD's segmentation score (paper Table 1)", "label segmenter trained on the dataset's photos, "
                  "scoring generated images", "docs/papers/pix2pixhd.md"),
}

#: group -> what it picks (the options come from conf/)
GROUPS = {
    "task": "what `run.py` does (table below)",
    "model": "the module's constructor: networks, losses, optimizer/scheduler factories, EMA "
             "(`conf/model/<paper>.yaml`, paper defaults)",
    "stage": "trainable/frozen parts, resolution, starting checkpoint (`conf/model_stages/<paper>/<stage>.yaml`); "
             "default: the model's first stage",
    "dataset": "data and its transforms; default: the model's synthetic data (`conf/dataset/default_for_<paper>.yaml`)",
    "size": "`demo` (default): small widths and short runs for CPUs (`conf/model_sizes/<paper>/demo.yaml`); `paper`: "
            "the paper's widths and official training length; `tiny`: the tests' sizes",
    "trainer": "Lightning Trainer settings",
    "strategy": "multi-device strategy ([multi-GPU and SLURM](multi-gpu-and-slurm.md))",
    "logger": "where metrics and images go ([logging](logging.md))",
    "callbacks": "checkpoints, sample grids, LR monitor",
    "experiment": "paper recipes (`conf/experiment/<paper>_<recipe>.yaml`)",
    "hydra/launcher": "submitit launchers for `-m` sweeps",
}
#: groups that are not picked on the command line (the model's own files, merged by conf/config.yaml)
HIDDEN_GROUPS = ("model_stages", "model_sizes", "model_tasks")


def _load(path: Path):
    from omegaconf import OmegaConf

    return OmegaConf.load(path)


def _first_comment(path: Path) -> str:
    """The first comment of a config file, up to its first blank or key line (joined)."""
    out: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#") or line.startswith("#   "):
            if out:
                break
            continue
        out.append(line.lstrip("#").strip())
    text = " ".join(out).replace("|", "\\|")
    return re.sub(r"<(?=[A-Za-z/])", "&lt;", text)  # <root> would be read as an HTML tag


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _models() -> list[str]:
    found = _options("model")
    unknown = [m for m in found if m not in PAPERS]
    if unknown:
        raise SystemExit(f"conf/model/{unknown[0]}.yaml has no line in PAPERS (scripts/docs_tables.py): add its "
                         f"paper, what it does and its page")
    return [m for m in PAPERS if m in found]


def _stages(model: str) -> list[str]:
    return list(_load(CONF / "model" / f"{model}.yaml").get("stages", []))


def _datasets(model: str) -> list[str]:
    return [d for d in _options("dataset") if not d.startswith("default_for_")
            and _load(CONF / "dataset" / f"{d}.yaml").get("model") == model]


def _default_dataset(model: str) -> str:
    return str(_load(CONF / "dataset" / f"default_for_{model}.yaml").defaults[0])


def _task_models(task: str) -> list[str] | None:
    models = _load(CONF / "task" / f"{task}.yaml").get("models")
    return list(models) if models is not None else None


def _code(items: list[str]) -> str:
    return ", ".join(f"`{i}`" for i in items)


def _rel(page: Path, target: str) -> str:
    """A link from ``page`` (relative to the repo) to ``target`` (relative to the repo)."""
    import os

    return os.path.relpath(REPO_ROOT / target, (REPO_ROOT / page).parent).replace(os.sep, "/")


# ------------------------------------------------------------------------------------------------ the tables
def table_papers(page: Path) -> str:
    rows = ["| paper | `model=` | stages (`stage=`, each from the previous one's checkpoint) | what it does | page |",
            "|---|---|---|---|---|"]
    for model in _models():
        name, what, doc = PAPERS[model]
        link = f"[{Path(doc).stem}]({_rel(page, doc)})"
        rows.append(f"| {name} | `{model}` | {' -> '.join(f'`{s}`' for s in _stages(model))} | {what} | {link} |")
    return "\n".join(rows)


def table_groups(page: Path) -> str:
    rows = ["| group | options | what it picks |", "|---|---|---|"]
    groups = sorted({p.parent.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml") if p.parent != CONF
                     and not p.parent.relative_to(CONF).as_posix().startswith(HIDDEN_GROUPS)})
    unknown = [g for g in groups if g not in GROUPS and g != "paths"]
    if unknown:
        raise SystemExit(f"conf/{unknown[0]}/ has no line in GROUPS (scripts/docs_tables.py): say what it picks")
    for group in GROUPS:
        if group == "model":
            options = _code(_models())
        elif group == "stage":
            options = "; ".join(f"{_code(_stages(m))} ({m})" for m in _models())
        elif group == "dataset":
            options = "; ".join(f"{_code(_datasets(m))} ({m})" for m in _models())
        else:
            names = _options(group)
            default = {"size": "demo", "trainer": "default", "strategy": "auto", "logger": "csv",
                       "callbacks": "default"}.get(group)
            options = ", ".join(f"`{o}`" + (" (default)" if o == default else "") for o in names)
        rows.append(f"| `{group}` | {options} | {GROUPS[group]} |")
    return "\n".join(rows)


def _task_rows(tasks: list[str]) -> list[str]:
    rows = ["| `task=` | what it does | models |", "|---|---|---|"]
    for task in tasks:
        models = _task_models(task)
        rows.append(f"| `{task}` | {_first_comment(CONF / 'task' / f'{task}.yaml')} | "
                    f"{_code(models) if models else 'every model'} |")
    return rows


def table_tasks(page: Path) -> str:
    return "\n".join(_task_rows(_options("task")))


def table_model_tasks(page: Path, model: str) -> str:
    return "\n".join(_task_rows([t for t in _options("task") if model in (_task_models(t) or [])]))


def table_stages(page: Path, model: str) -> str:
    rows = ["| `stage=` | starts from | trains | frozen | what it is |", "|---|---|---|---|---|"]
    for stage in _stages(model):
        path = CONF / "model_stages" / model / f"{stage}.yaml"
        spec = _load(path)
        previous = spec.get("previous")
        start = f"`{previous}`'s checkpoint (`stage.init_from=`)" if spec.get("requires_init") else "scratch"
        if previous and not spec.get("requires_init"):
            start = f"scratch, or `{previous}`'s checkpoint"
        rows.append(f"| `{stage}` | {start} | {_code(list(spec.get('trainable', []))) or '-'} | "
                    f"{_code(list(spec.get('frozen', []))) or '-'} | {_first_comment(path)} |")
    return "\n".join(rows)


def table_datasets(page: Path, model: str) -> str:
    rows = ["| `dataset=` | what it reads |", "|---|---|"]
    default = _default_dataset(model)
    for name in _datasets(model):
        mark = " (default)" if name == default else ""
        rows.append(f"| `{name}`{mark} | {_first_comment(CONF / 'dataset' / f'{name}.yaml')} |")
    return "\n".join(rows)


def table_experiments(page: Path, model: str) -> str:
    rows = ["| `experiment=` | the recipe |", "|---|---|"]
    for name in _options("experiment"):
        if name.split("_")[0] == model:
            rows.append(f"| `{name}` | {_first_comment(CONF / 'experiment' / f'{name}.yaml')} |")
    return "\n".join(rows)


def table_help(page: Path) -> str:
    sys.path.insert(0, str(REPO_ROOT))
    from tasks.cli import project_help

    return "```text\n$ python run.py --help\n" + project_help(str(CONF)).rstrip() + "\n```"


TABLES = {"papers": table_papers, "groups": table_groups, "tasks": table_tasks, "help": table_help}
PER_MODEL = {"stages": table_stages, "datasets": table_datasets, "tasks": table_model_tasks,
             "experiments": table_experiments}
MARKER = re.compile(r"(<!-- table: (?P<name>[\w:]+) -->\n)(?P<body>(?:(?!<!-- table:).)*?)\n?<!-- /table -->", re.S)


def render(name: str, page: Path) -> str:
    kind, _, model = name.partition(":")
    if model:
        if kind not in PER_MODEL or model not in _models():
            raise SystemExit(f"{page}: unknown table {name!r} (per model: {', '.join(PER_MODEL)}; models: "
                             f"{', '.join(_models())})")
        return PER_MODEL[kind](page, model)
    if name not in TABLES:
        raise SystemExit(f"{page}: unknown table {name!r} (one of {', '.join(TABLES)}, or <kind>:<model>)")
    return TABLES[name](page)


def markdown_files(root: Path = REPO_ROOT) -> list[Path]:
    files: list[Path] = []
    for entry in PAGES:
        path = root / entry
        files += sorted(path.rglob("*.md")) if path.is_dir() else [path]
    return files


def update(root: Path = REPO_ROOT, write: bool = True) -> list[str]:
    """Regenerate every table; returns ``<file>: <table>`` for each one that differed (written unless not
    ``write``)."""
    stale = []
    for path in markdown_files(root):
        text = path.read_text()
        page = path.relative_to(root)

        def fill(match: re.Match, page: Path = page) -> str:
            body = render(match["name"], page)
            if body != match["body"]:
                stale.append(f"{page}: {match['name']}")
            return match.group(1) + body + "\n<!-- /table -->"

        new = MARKER.sub(fill, text)
        if write and new != text:
            path.write_text(new)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a table differs from conf/")
    args = parser.parse_args(argv)
    stale = update(write=not args.check)
    for entry in stale:
        print(f"{'stale' if args.check else 'rewrote'}: {entry}")
    if args.check and stale:
        print("the tables differ from conf/: run python scripts/docs_tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
