"""GAN update order (official pix2pixHD ``train.py`` vs D first) and mixed precision under manual optimisation.

The reference is the first iteration written out by hand in the official order: G's fake, D on the detached fake,
D on the real image, D on the fake, the LSGAN / feature-matching / VGG terms, then ``loss_G`` backward and G's
Adam step, D's gradients cleared, ``loss_D`` backward and D's Adam step.
"""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.plugins.precision import MixedPrecision
from torch.utils.data import DataLoader, Dataset

from datamodules.pix2pixhd import SyntheticScenesDataset
from lightning_modules.factory import build_module

# fp32 on the same machine: the module and the hand reference run the same kernels in another grouping
FP32_ATOL = 1e-5
# bf16 autocast keeps 8 bits of mantissa: after one iteration at this size the terms are within 2% (relative) of
# fp32 (largest seen: 0.9%, D_fake); fp16 autocast is closer (0.07%)
MIXED_RTOL = 2e-2
# cosine between G's first weight update under mixed precision and under fp32
MIXED_STEP_COSINE = 0.8


class _OneBatch(Dataset):
    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.batch


def _batch(size: int = 16) -> dict[str, torch.Tensor]:
    ds = SyntheticScenesDataset(num_samples=2, image_size=(size, size), label_nc=8, seed=1)
    items = [ds[i] for i in range(2)]
    return {k: torch.stack([it[k] for it in items]) for k in ("label", "inst", "image")}


def _module(make_config, *overrides: str):
    torch.manual_seed(0)
    return build_module(make_config("model.scheduler=null", *overrides))


def _precision(precision: str) -> dict:
    """Trainer arguments: Lightning turns ``16-mixed`` on a CPU into bf16, so fp16 with its GradScaler (the GPU
    path) is built as an explicit plugin here. Its first scale is 2**10: at the default 2**16 G's fp16 gradients
    overflow at this size and the scaler skips G's first step while it calibrates (see the overflow test)."""
    if precision == "16-mixed":
        return {"plugins": [MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))]}
    return {"precision": precision}


def _fit_one_iteration(module, batch: dict[str, torch.Tensor], precision: str = "32-true") -> dict[str, float]:
    """One batch through a real Trainer (manual_backward, precision plugin); returns the logged train terms."""
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, **_precision(precision), logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0)
    loader = DataLoader(_OneBatch(batch), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return {k[len("train/"):]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}


def _hand_official_iteration(module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """The official order by hand on ``module`` (a copy): terms from the pre-update D, G's step, then D's."""
    lr, betas = 2e-4, (0.5, 0.999)  # conf/model/pix2pixhd.yaml: official --lr 0.0002 --beta1 0.5
    num_d, n_layers, lam = 2, 3, 10.0  # the tiny config's num_D, n_layers_D, --lambda_feat
    netG, netE, netD = module.netG, module.netE, module.netD
    opt_g = torch.optim.Adam(list(netG.parameters()) + list(netE.parameters()), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(netD.parameters(), lr=lr, betas=betas)
    real = batch["image"]
    label_map = module.encode_label(batch["label"], batch["inst"])
    fake = netG(torch.cat([label_map, netE(real, batch["inst"])], dim=1))
    pred_pool = netD(torch.cat([label_map, fake.detach()], dim=1))
    pred_real = netD(torch.cat([label_map, real], dim=1))
    pred_fake = netD(torch.cat([label_map, fake], dim=1))

    def lsgan(preds, target: float) -> torch.Tensor:
        return sum(F.mse_loss(p[-1], torch.full_like(p[-1], target)) for p in preds)

    t = {"D_fake": 0.5 * lsgan(pred_pool, 0.0), "D_real": 0.5 * lsgan(pred_real, 1.0),
         "G_GAN": lsgan(pred_fake, 1.0)}
    t["G_GAN_Feat"] = sum(F.l1_loss(f, r.detach()) * (4.0 / (n_layers + 1)) * (1.0 / num_d) * lam
                          for pf, pr in zip(pred_fake, pred_real, strict=True)
                          for f, r in zip(pf[:-1], pr[:-1], strict=True))
    t["G_VGG"] = module.objective.perceptual(fake, real)
    t["loss_G"] = t["G_GAN"] + t["G_GAN_Feat"] + t["G_VGG"]
    t["loss_D"] = t["D_fake"] + t["D_real"]
    opt_g.zero_grad()
    t["loss_G"].backward()
    opt_g.step()
    opt_d.zero_grad()  # official: G's backward left gradients in D; they go before D's own
    t["loss_D"].backward()
    opt_d.step()
    return {k: float(v) for k, v in t.items()}


def _max_weight_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_official_order_is_the_default_and_matches_a_hand_built_iteration(make_config) -> None:
    module = _module(make_config)
    assert module.update_order == "official"
    reference = copy.deepcopy(module)
    batch = _batch()
    logged = _fit_one_iteration(module, batch)
    expected = _hand_official_iteration(reference, batch)
    for name, value in expected.items():
        assert logged[name] == pytest.approx(value, abs=FP32_ATOL), name
    for net in ("netG", "netE", "netD"):
        assert _max_weight_diff(getattr(module, net), getattr(reference, net)) < FP32_ATOL, net


def test_d_first_steps_d_the_same_but_g_against_the_updated_d(make_config) -> None:
    """Both orders give D the same first step (its terms use the detached fake and the pre-update D); G's
    adversarial term then differs, because d_first scores the fake with the updated D."""
    batch = _batch()
    official, d_first = _module(make_config), _module(make_config, "model.update_order=d_first")
    logged_official = _fit_one_iteration(official, batch)
    logged_d_first = _fit_one_iteration(d_first, batch)
    assert logged_d_first["D_fake"] == pytest.approx(logged_official["D_fake"], abs=FP32_ATOL)
    assert _max_weight_diff(official.netD, d_first.netD) < FP32_ATOL
    assert abs(logged_d_first["G_GAN"] - logged_official["G_GAN"]) > 1e-3
    assert _max_weight_diff(official.netG, d_first.netG) > 1e-7


def test_generator_pass_leaves_no_gradient_in_the_discriminator(make_config) -> None:
    module = _module(make_config)
    d_terms, g_terms = module.gan_terms(module.prepare_batch(_batch()))
    torch.stack(list(g_terms.values())).sum().backward()
    assert all(p.grad is None for p in module.netD.parameters())
    assert all(p.requires_grad for p in module.netD.parameters())  # flags restored after the G pass
    assert any(p.grad is not None for p in module.netG.parameters())


def test_unknown_update_order_is_a_clear_error(make_config) -> None:
    with pytest.raises(ValueError, match="update_order='g_first'.*official, d_first"):
        _module(make_config, "model.update_order=g_first")


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_first_iteration_close_to_fp32(make_config, precision: str) -> None:
    """Manual optimisation under the precision plugin (16-mixed: one GradScaler, unscaled and updated at each
    optimizer's step): finite terms within MIXED_RTOL of fp32, and G's weights move like fp32's."""
    batch = _batch()
    fp32, mixed = _module(make_config), _module(make_config)
    start = copy.deepcopy(fp32.netG)
    logged_fp32 = _fit_one_iteration(fp32, batch)
    logged_mixed = _fit_one_iteration(mixed, batch, precision)
    for name in ("D_fake", "D_real", "G_GAN", "G_GAN_Feat", "G_VGG"):
        assert torch.isfinite(torch.tensor(logged_mixed[name])), name
        assert logged_mixed[name] == pytest.approx(logged_fp32[name], rel=MIXED_RTOL), name
    step_fp32 = torch.cat([(p - q).flatten() for p, q in zip(fp32.netG.parameters(), start.parameters(), strict=True)])
    step_mixed = torch.cat([(p - q).flatten() for p, q in zip(mixed.netG.parameters(), start.parameters(),
                                                             strict=True)])
    # Adam's first step is about lr * sign(grad): elements whose gradient is near zero may flip under bf16/fp16
    assert float(F.cosine_similarity(step_fp32, step_mixed, dim=0)) > MIXED_STEP_COSINE


def test_fp16_overflow_in_the_generator_skips_only_the_generator_step(make_config) -> None:
    """One GradScaler, unscaled and checked at each optimizer's step: an inf in G's gradients skips G's step (and
    halves the scale) while D still steps; the next iteration then trains both."""
    module = _module(make_config)
    g_before, d_before = copy.deepcopy(module.netG), copy.deepcopy(module.netD)
    first = next(module.netG.parameters())
    handle = first.register_hook(lambda g: g * float("inf"))
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, plugins=[plugin], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0)
    trainer.fit(module, train_dataloaders=DataLoader(_OneBatch(_batch()), batch_size=None))
    handle.remove()
    assert _max_weight_diff(module.netG, g_before) == 0.0
    assert _max_weight_diff(module.netD, d_before) > 0.0
    assert plugin.scaler.get_scale() == 2.0 ** 9


@pytest.mark.slow
def test_bf16_training_run_completes_with_finite_losses_and_a_checkpoint(make_config, tmp_path) -> None:
    """``trainer.precision=bf16-mixed`` (the CPU setting) through task=train: finite logged losses, last.ckpt saved."""
    import csv
    import math
    import os

    from tasks.train import train

    run_dir = tmp_path / "bf16"
    train(make_config("trainer.precision=bf16-mixed", "callbacks.sample_grid.every_n_steps=1000", run_dir=run_dir))
    assert os.path.isfile(run_dir / "checkpoints" / "last.ckpt")
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r[k]) for r in rows for k in ("train/loss_G", "train/loss_D") if r.get(k)]
    assert len(losses) >= 4 and all(math.isfinite(v) for v in losses), losses
