"""Every config group option composes, resolves and (for models) instantiates; mismatches fail at the door."""

from __future__ import annotations

import os

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lightning_modules.factory import build_module
from tasks.builders import build_datamodule, build_strategy
from tasks.config import CONF_DIR, ConfigError, validate_config
from tests.conftest import compose_config


def _options(group: str) -> list[str]:
    folder = os.path.join(CONF_DIR, group)
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


def _model_for(group: str, option: str) -> str | None:
    """The model a dataset option belongs to (its ``model:`` key, or ``default_for_<model>``)."""
    if option.startswith("default_for_"):
        return option[len("default_for_"):]
    if group == "dataset":
        return OmegaConf.load(os.path.join(CONF_DIR, group, f"{option}.yaml")).get("model")
    if group == "experiment":  # a recipe names its model in its defaults list (override /model: <paper>)
        for entry in OmegaConf.load(os.path.join(CONF_DIR, group, f"{option}.yaml")).get("defaults") or []:
            if OmegaConf.is_dict(entry) and "override /model" in entry:
                return str(entry["override /model"])
    return None


def _paper_stages() -> list[tuple[str, str]]:
    """(model, stage) for every stage definition conf/model_stages/<model>/<stage>.yaml."""
    folder = os.path.join(CONF_DIR, "model_stages")
    return [(m, s) for m in sorted(os.listdir(folder)) for s in _options(os.path.join("model_stages", m))]


@pytest.mark.parametrize(("model", "stage"), _paper_stages())
def test_every_stage_of_every_model_composes(model: str, stage: str, tmp_path) -> None:
    cfg = compose_config([f"model={model}", f"stage={stage}"], tmp_path, tiny=model == "pix2pixhd")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["model"]["name"] == model and resolved["stage"]["model"] == model
    assert resolved["stage"]["name"] in resolved["model"]["stages"]
    if stage != "default":
        assert resolved["stage"]["name"] == stage
    else:
        assert resolved["stage"]["name"] == resolved["model"]["stages"][0]


@pytest.mark.parametrize(
    "group",
    ["task", "model", "dataset", "trainer", "strategy", "logger", "callbacks", "paths", "size", "experiment"],
)
def test_every_option_composes_and_resolves(group: str, tmp_path) -> None:
    options = _options(group)
    assert options, f"conf/{group} is empty"
    for option in options:
        overrides = [f"{group}={option}"]
        model = _model_for(group, option)
        if model is not None and group != "model":
            overrides.insert(0, f"model={model}")
        if group == "task" and "ckpt_path" in OmegaConf.load(os.path.join(CONF_DIR, group, f"{option}.yaml")):
            overrides.append("task.ckpt_path=/nonexistent.ckpt")  # tasks that read a checkpoint
        cfg = compose_config(overrides, tmp_path / option, tiny=group not in ("size", "experiment"))
        resolved = OmegaConf.to_container(cfg, resolve=True)
        expected = option if group == "model" else (model or "pix2pixhd")
        assert resolved["model"]["name"] == expected


@pytest.mark.parametrize("launcher", ["slurm", "local"])
def test_launcher_configs_compose(launcher: str, tmp_path) -> None:
    from tasks.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"hydra/launcher={launcher}", "trainer.devices=2", f"paths.run_dir={tmp_path}"],
            return_hydra_config=True,
        )
    launcher_cfg = cfg.hydra.launcher
    assert "submitit" in launcher_cfg._target_.lower()
    if launcher == "slurm":
        assert launcher_cfg.tasks_per_node == 2  # one task per device for Lightning's DDP
        assert launcher_cfg.nodes == 1
        assert launcher_cfg.signal_delay_s > 0 and launcher_cfg.max_num_timeout > 0


@pytest.mark.parametrize("stage", ["global", "local", "joint"])
def test_every_stage_instantiates(stage: str, make_config) -> None:
    cfg = make_config(f"stage={stage}")
    module = build_module(cfg, for_inference=True)
    expected = "GlobalGenerator" if stage == "global" else "LocalEnhancer"
    assert type(module.netG).__name__ == expected
    dm = build_datamodule(cfg)
    scale = 0.5 if stage == "global" else 1.0
    assert tuple(dm.train_size) == (int(32 * scale), int(32 * scale))


@pytest.mark.parametrize("strategy", ["auto", "ddp", "ddp_spawn"])
def test_strategies_build(strategy: str, make_config) -> None:
    built = build_strategy(make_config(f"strategy={strategy}"))
    if strategy == "auto":
        assert built == "auto"
    else:
        assert type(built).__name__ == "DDPStrategy"


def test_model_stage_mismatch_names_valid_stages(make_config) -> None:
    cfg = make_config()
    cfg.stage.model = "lst"
    cfg.stage.name = "transform"
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "transform" in msg and "pix2pixhd" in msg
    for valid in ("global", "local", "joint"):
        assert valid in msg


def test_missing_checkpoint_for_test_task_is_clear(make_config) -> None:
    cfg = make_config("task=test", "task.ckpt_path=/no/such/file.ckpt")
    with pytest.raises(ConfigError, match="/no/such/file.ckpt"):
        validate_config(cfg)


def test_paper_defaults_in_model_config(tmp_path) -> None:
    cfg = compose_config(["size=paper"], tmp_path, tiny=False)
    net = cfg.model.networks
    assert (net["global"].ngf, net["global"].n_downsampling, net["global"].n_blocks) == (64, 4, 9)
    assert (net.local.ngf, net.local.n_blocks_local) == (32, 3)
    assert (net.discriminator.ndf, net.discriminator.n_layers, net.discriminator.num_D) == (64, 3, 3)
    assert (net.encoder.nef, net.encoder.n_downsampling, cfg.model.feat_num) == (16, 4, 3)
    assert cfg.model.losses.feature_matching.lambda_feat == 10.0
    assert cfg.model.losses.adversarial.mode == "lsgan"
    assert (cfg.model.optimizer.lr, cfg.model.optimizer.betas[0]) == (2e-4, 0.5)
    assert cfg.stage.resolution_scale == 0.5


def test_official_weights_stand_in_for_the_previous_stage(tmp_path) -> None:
    """A stage that starts from the previous stage's checkpoint starts from model.official_weights instead (the
    EDN page's `stage=local model.official_weights=<folder>`)."""
    from lightning_modules.stages import StageError

    with pytest.raises(StageError, match="stage.init_from is not set"):
        validate_config(compose_config(["model=edn", "stage=local"], tmp_path / "a"))
    validate_config(compose_config(["model=edn", "stage=local", f"model.official_weights={tmp_path}"], tmp_path / "b"))
