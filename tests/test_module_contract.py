"""One contract for every paper: each (model, stage) of conf/model/*.yaml at ``size=tiny``, from the configs alone.

Per stage: the module builds (from the previous stage's checkpoint when the stage needs one: the chain loads with
only its declared missing/unused keys), two training steps give finite losses, every trainable part moved and every
frozen part and frozen pretrained network stayed equal bit for bit, ``generate`` gives the declared shape and
range, ``sample_images`` rows are in [0, 1], ``summary_networks`` runs, a Lightning checkpoint reloads through
``lightning_modules.load`` with equal outputs, and ``task=test`` runs. A new paper is covered by its configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from lightning_modules import load
from lightning_modules.factory import build_module
from tasks.builders import build_datamodule
from tasks.config import CONF_DIR
from tasks.summary import summarize
from tests.conftest import _TINY_RUN, compose_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

MODELS = {p.stem: list(OmegaConf.load(p).stages) for p in sorted((Path(CONF_DIR) / "model").glob("*.yaml"))}
CASES = [(model, stage) for model, stages in MODELS.items() for stage in stages]


def _stage_file(model: str, stage: str):
    return OmegaConf.load(Path(CONF_DIR) / "model_stages" / model / f"{stage}.yaml")


class _Runs:
    """Each (model, stage) trained once per session; a stage that needs its previous stage's checkpoint (or
    another model's, ``needs_models``) gets it from here."""

    def __init__(self, root: Path) -> None:
        self.root, self.done = root, {}

    def config(self, model: str, stage: str, *extra: str):
        spec = _stage_file(model, stage)
        overrides = [f"model={model}", f"stage={stage}", *_TINY_RUN, *extra]
        if spec.get("requires_init"):
            overrides.append(f"stage.init_from={self.get(model, spec.previous)['ckpt']}")
        for key, other in (spec.get("needs_models") or {}).items():
            overrides.append(f"{key}={self.get(other, MODELS[other][0])['ckpt']}")
        return compose_config(overrides, self.root / f"{model}_{stage}", tiny=False)

    def get(self, model: str, stage: str) -> dict:
        if (model, stage) not in self.done:
            self.done[(model, stage)] = self._train(model, stage)
        return self.done[(model, stage)]

    def _train(self, model: str, stage: str) -> dict:
        torch.manual_seed(0)
        cfg = self.config(model, stage)
        datamodule = build_datamodule(cfg)
        module = build_module(cfg)
        before = {k: v.detach().clone() for k, v in module.state_dict().items()}
        steps = 2 * module.optimizer_steps_per_batch
        trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_train_batches=2, limit_val_batches=1,
                             logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0)
        trainer.fit(module, datamodule=datamodule)
        ckpt = self.root / f"{model}_{stage}.ckpt"
        trainer.save_checkpoint(ckpt)
        return {"cfg": cfg, "module": module.eval(), "before": before, "trainer": trainer, "ckpt": str(ckpt),
                "datamodule": datamodule}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> _Runs:
    return _Runs(tmp_path_factory.mktemp("contract"))


def _names(module, parts: list[str]) -> set[str]:
    """State-dict keys of the parameters and buffers of ``parts``."""
    ids = {id(t) for part in parts for m in module.resolve_part(part) for t in [*m.parameters(), *m.buffers()]}
    return {k for k, v in module.state_dict(keep_vars=True).items() if id(v) in ids}


def _batch(run: dict) -> dict:
    datamodule = run["datamodule"]
    loader = datamodule.val_dataloader() if hasattr(datamodule, "val_dataloader") else None
    batch = next(iter(loader if loader is not None else datamodule.train_dataloader()))
    return batch


@pytest.mark.parametrize(("model", "stage"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_module_contract(model: str, stage: str, runs: _Runs, tmp_path) -> None:
    run = runs.get(model, stage)
    module, before = run["module"], run["before"]
    after = module.state_dict()
    spec = module.stage_spec

    # two steps: finite losses, trainable parts moved, frozen parts and pretrained networks did not
    losses = {k: float(v) for k, v in run["trainer"].callback_metrics.items() if v.numel() == 1}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    fitted = list(spec.extra.get("fitted") or [])  # frozen to gradients, set in closed form (stage key `fitted`)
    frozen = (_names(module, spec.frozen) - _names(module, fitted)) | {
        k for k in after if module.non_persistent_prefixes() and k.startswith(module.non_persistent_prefixes())}
    for part in [*spec.trainable, *fitted]:
        moved = [k for k in _names(module, [part]) - frozen
                 if after[k].is_floating_point() and not torch.equal(after[k], before[k])]
        assert moved or not (_names(module, [part]) - frozen), f"{model}/{stage}: trainable part {part} did not move"
    still = [k for k in frozen if after[k].is_floating_point() and not torch.equal(after[k], before[k])]
    assert not still, f"{model}/{stage}: frozen weights moved: {still[:5]}"

    # generate: declared shape and range; sample rows in [0, 1]; the summary runs
    batch = _batch(run)
    with torch.no_grad():
        out = module.generate(batch)
        lo, hi = module.generate_range
        assert lo <= float(out.min()) and float(out.max()) <= hi, (float(out.min()), float(out.max()))
        if module.generates_images:
            assert out.dim() == 4 and out.shape[1] == 3
            if module.paired_outputs:
                assert out.shape == module.target_images(batch).shape
        for name, rows in module.sample_images(batch).items():
            assert 0.0 <= float(rows.min()) and float(rows.max()) <= 1.0, name
    rows = summarize(run["cfg"])  # task=summary: every sub-network's forward at the training size
    assert rows and all(r["params"] > 0 and r["output"] for r in rows), rows

    # a Lightning checkpoint reloads through the loader with equal outputs
    reloaded = load(run["ckpt"])
    with torch.no_grad():
        assert torch.equal(reloaded.generate(batch), out)

    # task=test runs on the checkpoint
    from tasks.evaluate import test

    cfg = compose_config([f"model={model}", f"stage={stage}", *_TINY_RUN, "task=test",
                          f"task.ckpt_path={run['ckpt']}"], tmp_path / "test", tiny=False)
    metrics = test(cfg)
    assert metrics and all(math.isfinite(float(v)) for v in metrics.values()), metrics
