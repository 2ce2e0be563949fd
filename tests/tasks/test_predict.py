"""task=predict: a folder of label (+ instance) maps -> one PNG per input, named after its stem."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from tasks.builders import build_datamodule
from tasks.config import ConfigError, validate_config
from tasks.pix2pixhd.predict import parse_cluster_index, predict


def _write_inputs(folder) -> tuple[str, str]:
    label_dir, inst_dir = folder / "labels", folder / "insts"
    label_dir.mkdir()
    inst_dir.mkdir()
    for i, stem in enumerate(("street_a", "street_b")):
        label = np.zeros((20, 24), np.uint8)
        label[10:] = 1
        label[12:18, 3 + i : 9 + i] = 3
        label[12:18, 14:20] = 3
        inst = label.astype(np.uint16)
        inst[12:18, 3 + i : 9 + i] = 3000
        inst[12:18, 14:20] = 3001
        Image.fromarray(label).save(label_dir / f"{stem}.png")
        Image.fromarray(inst).save(inst_dir / f"{stem}.png")
    return str(label_dir), str(inst_dir)


def _config(make_config, ckpt: str, label_dir: str, inst_dir: str | None, run_dir, *extra: str):
    overrides = ["task=predict", f"task.ckpt_path={ckpt}", f"dataset.predict_label_dir={label_dir}", *extra]
    if inst_dir is not None:
        overrides.append(f"dataset.predict_inst_dir={inst_dir}")
    return make_config(*overrides, run_dir=run_dir)


def test_predict_writes_one_png_per_label_map(make_config, trained_ckpt: str, tmp_path, caplog) -> None:
    label_dir, inst_dir = _write_inputs(tmp_path)
    cfg = _config(make_config, trained_ckpt, label_dir, inst_dir, tmp_path / "run")
    validate_config(cfg)
    with caplog.at_level(logging.WARNING):
        paths = predict(cfg)
    out_dir = str(cfg.paths.prediction_dir)
    assert paths == [os.path.join(out_dir, "street_a.png"), os.path.join(out_dir, "street_b.png")]
    for p, label in zip(paths, sorted(os.listdir(label_dir)), strict=True):
        with Image.open(p) as img, Image.open(os.path.join(label_dir, label)) as lab:
            assert img.mode == "RGB" and img.size == lab.size  # written at the label map's size (default)
    # task.output_size=model keeps the size the model generates at (stage global: half of 32x32)
    cfg_model = _config(make_config, trained_ckpt, label_dir, inst_dir, tmp_path / "run2", "task.output_size=model")
    h, w = build_datamodule(cfg_model).train_size
    for p in predict(cfg_model):
        with Image.open(p) as img:
            assert img.size == (w, h) and (w, h) != lab.size
    # the tiny checkpoint was never clustered: random features are zeros, and the task says so
    assert "cluster_features" in caplog.text


def test_predict_random_features_are_seeded(make_config, clustered_ckpt: str, tmp_path) -> None:
    label_dir, inst_dir = _write_inputs(tmp_path)

    def run(name: str, *extra: str) -> list[np.ndarray]:
        cfg = _config(make_config, clustered_ckpt, label_dir, inst_dir, tmp_path / name, *extra)
        return [np.asarray(Image.open(p)) for p in predict(cfg)]

    a = run("a", "task.feature_mode=random", "task.feature_seed=3")
    b = run("b", "task.feature_mode=random", "task.feature_seed=3")
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # cluster mode with a per-class index: runs, and an index past the class's centres is an error
    c = run("c", "task.feature_mode=cluster", "task.cluster_index={0:0,1:0}")
    assert len(c) == 2 and c[0].shape == a[0].shape
    with pytest.raises(ValueError, match="out of range"):
        run("d", "task.feature_mode=cluster", "task.cluster_index=99")


def test_predict_needs_a_label_folder(make_config, trained_ckpt: str, tmp_path) -> None:
    cfg = make_config("task=predict", f"task.ckpt_path={trained_ckpt}")
    with pytest.raises(ValueError, match="dataset.predict_label_dir"):
        predict(cfg)
    cfg = _config(make_config, trained_ckpt, str(tmp_path / "absent"), None, tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="absent"):
        predict(cfg)


def test_predict_rejects_bad_arguments(make_config, trained_ckpt: str, tmp_path) -> None:
    label_dir, inst_dir = _write_inputs(tmp_path)
    cfg = _config(make_config, trained_ckpt, label_dir, inst_dir, tmp_path / "run", "task.feature_mode=encode")
    with pytest.raises(ValueError, match="encode"):
        predict(cfg)
    missing = str(tmp_path / "gone.ckpt")
    cfg = _config(make_config, missing, label_dir, inst_dir, tmp_path / "run")
    with pytest.raises(ConfigError, match=missing):
        validate_config(cfg)
    with pytest.raises(FileNotFoundError, match=missing):
        predict(cfg)


def test_parse_cluster_index() -> None:
    assert parse_cluster_index(None) is None
    assert parse_cluster_index(2) == 2
    assert parse_cluster_index(OmegaConf.create({3: 1, "4": 0})) == {3: 1, 4: 0}
    for bad in (-1, True, "x", {3: -2}, {"car": 1}):
        with pytest.raises(ValueError, match="cluster_index"):
            parse_cluster_index(bad)


def test_predict_with_another_models_checkpoint_names_its_task(tmp_path) -> None:
    """Issue 21: an LST checkpoint given to task=predict first asked for dataset.predict_label_dir; now the
    checkpoint's model is checked first, and the message names the task that runs it."""
    from lightning_modules.checkpoints import CheckpointError
    from lightning_modules.factory import build_module
    from tests.conftest import compose_config
    from tests.tasks.test_lst_inference import lst_config, save_checkpoint

    lst = save_checkpoint(build_module(lst_config(tmp_path / "lst", "stage=transform"), for_inference=True),
                          tmp_path / "lst.ckpt")
    cfg = compose_config(["task=predict", f"task.ckpt_path={lst}"], tmp_path / "run")
    with pytest.raises(CheckpointError, match="lst.ckpt is a 'lst' checkpoint, not a pix2pixHD one: .*use "
                                              "task=stylize task.content=<image> task.style=<image>"):
        predict(cfg)


def test_an_unknown_label_id_at_inference_asks_for_the_models_classes(make_config, trained_ckpt, tmp_path) -> None:
    """Issue 'Real footage': raising dataset.label_nc cannot help a trained model; the message says what can."""
    label_dir = tmp_path / "labels"
    label_dir.mkdir()
    label = np.zeros((16, 16), np.uint8)
    label[4:8] = 200
    Image.fromarray(label).save(label_dir / "a.png")
    cfg = make_config("task=predict", f"task.ckpt_path={trained_ckpt}", f"dataset.predict_label_dir={label_dir}",
                      run_dir=tmp_path / "run")
    with pytest.raises(ValueError, match=r"contains id 200 .*the trained model has label_nc=\d+ classes and cannot "
                                         r"learn more") as err:
        predict(cfg)
    assert "raise dataset.label_nc" not in str(err.value)
