"""The base owns the loop of a single-objective paper: a module that only writes its loss terms trains, with the
optimizer and the learning-rate schedule built from config factories (Adam or SGD; per-step, per-epoch and
plateau schedules), and frozen pretrained networks stay out of checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hydra
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.base import SynthesisModule
from lightning_modules.schedules import constant_then_linear, inverse_time

STAGE = {"name": "fit", "model": "toy", "trainable": ["net"], "frozen": []}


class ToyRegression(SynthesisModule):
    """Learns y = 2x + 1 with a frozen 'pretrained' feature net next to it; writes only its loss terms."""

    model_name = "toy"

    def __init__(self, optimizer: Any, scheduler: Mapping[str, Any] | None = None):
        super().__init__(STAGE, optimizer, scheduler)
        self.net = nn.Linear(1, 1)
        self.pretrained = nn.Linear(1, 4)
        self.setup_stage()

    def parts(self) -> dict[str, list[nn.Module]]:
        return {"net": [self.net]}

    def frozen_pretrained(self) -> list[nn.Module]:
        return [self.pretrained]

    def loss_terms(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"l2": ((self.net(x) - y) ** 2).mean(), "zero": 0.0 * self.pretrained(x).sum()}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val/loss", sum(self.loss_terms(batch).values()))


def _factories(yaml: str) -> dict[str, Any]:
    return hydra.utils.instantiate(OmegaConf.create(yaml), _convert_="partial")


def _data() -> DataLoader:
    x = torch.linspace(-1, 1, 32).unsqueeze(1)
    return DataLoader(TensorDataset(x, 2 * x + 1), batch_size=8)


SGD_PLATEAU = """
optimizer: {_target_: torch.optim.SGD, _partial_: true, lr: 0.02, momentum: 0.9}   # X2Face: SGD, momentum 0.9
scheduler:
  factory: {_target_: torch.optim.lr_scheduler.ReduceLROnPlateau, _partial_: true, factor: 0.1, patience: 2}
  interval: epoch
  monitor: val/loss
"""


def test_loss_terms_alone_train_with_sgd_and_a_plateau_schedule(tmp_path) -> None:
    torch.manual_seed(0)
    module = ToyRegression(**_factories(SGD_PLATEAU))
    (config,) = module.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD) and config["optimizer"].defaults["momentum"] == 0.9
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert config["lr_scheduler"]["monitor"] == "val/loss"
    # the frozen pretrained net is not optimised and not in eval-less training
    assert {id(p) for p in config["optimizer"].param_groups[0]["params"]} == {id(p) for p in module.net.parameters()}
    before = float(module.loss_terms(next(iter(_data())))["l2"])
    trainer = pl.Trainer(max_epochs=15, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, _data(), _data())
    after = float(module.loss_terms(next(iter(_data())))["l2"])
    assert after < 0.2 * before, (before, after)
    # the plateau schedule read val/loss and cut the rate once it stopped improving
    assert trainer.optimizers[0].param_groups[0]["lr"] < 0.02
    assert "train/l2" in trainer.callback_metrics and "train/loss" in trainer.callback_metrics
    assert not module.pretrained.training and all(not p.requires_grad for p in module.pretrained.parameters())


def test_frozen_pretrained_networks_are_left_out_of_checkpoints() -> None:
    module = ToyRegression(**_factories(SGD_PLATEAU))
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert set(checkpoint["state_dict"]) == {"net.weight", "net.bias"}
    restored = module.restore_non_persistent(dict(checkpoint["state_dict"]))
    assert set(restored) == set(module.state_dict())


@pytest.mark.parametrize(("factory", "steps", "expected"), [
    (lambda opt: constant_then_linear(opt, niter=2, niter_decay=4), 4, 1e-2 * (1 - 3 / 4)),   # epochs 0..3
    (lambda opt: inverse_time(opt, decay=1e-2), 10, 1e-2 / (1 + 10 * 1e-2)),
])
def test_schedule_factories(factory, steps: int, expected: float) -> None:
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-2)
    sched = factory(opt)
    for _ in range(steps):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(expected)


def test_a_stage_that_trains_nothing_is_a_clear_error() -> None:
    module = ToyRegression(**_factories(SGD_PLATEAU))
    module.net.requires_grad_(False)
    with pytest.raises(ValueError, match="leaves no model parameter of model toy trainable"):
        module.configure_optimizers()


def test_the_optimizer_must_be_a_factory() -> None:
    with pytest.raises(ValueError, match="must be a factory"):
        ToyRegression(optimizer={"lr": 0.1})
