"""Everybody Dance Now module: shapes and terms of each stage, gradients through both frames, the stages chain
(global -> local -> face), a face stage without a body checkpoint, and 2-rank DDP of stage global."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from lightning_modules.factory import build_module
from lightning_modules.stages import StageError
from tasks.builders import build_datamodule
from tasks.config import ConfigError, compose_config, validate_config
from tasks.train import train
from tests.conftest import REPO_ROOT, TINY_EDN


def _cfg(*overrides: str, run_dir=None):
    return compose_config([*TINY_EDN, *overrides], run_dir)


def _batch(cfg) -> dict:
    return next(iter(build_datamodule(cfg).train_dataloader()))


def test_global_stage_terms_and_gradients() -> None:
    cfg = _cfg()
    module = build_module(cfg)
    batch = _batch(cfg)
    assert batch["label"].shape == (1, 2, 3, 16, 32)       # 32x64 at the global stage's scale 0.5
    step = module.prepare_batch(batch)
    assert step["fake"].shape == batch["image"].shape
    d_terms = module.discriminator_loss(step)
    assert set(d_terms) == {"D_fake", "D_real", "D_fake_temporal", "D_real_temporal"}
    g_terms = module.generator_loss(step)
    assert set(g_terms) == {"G_GAN", "G_GAN_Feat", "G_VGG", "G_GAN_temporal", "G_GAN_Feat_temporal"}
    # the temporal D's first conv sees both frames' labels and images
    assert module.netDT.discriminators[0].blocks[0][0].in_channels == 12
    module.zero_grad()
    g_terms["G_GAN_temporal"].backward()
    assert all(p.grad is not None for p in module.netG.parameters() if p.requires_grad)


def test_bad_label_shape_is_a_clear_error() -> None:
    module = build_module(_cfg())
    with pytest.raises(ValueError, match=r"\[B, 2, 3, H, W\]"):
        module.prepare_batch({"label": torch.zeros(1, 3, 16, 32), "image": torch.zeros(1, 3, 16, 32)})


def test_face_stage_without_a_body_checkpoint_is_refused() -> None:
    with pytest.raises(StageError, match="stage 'face' of model 'edn'.*stage.init_from"):
        validate_config(_cfg("stage=face"))
    with pytest.raises(ConfigError, match="stage 'joint' does not belong to model 'edn'"):
        validate_config(_cfg("stage=joint"))


@pytest.fixture(scope="module")
def chained(tmp_path_factory) -> dict[str, str]:
    """global -> local -> face, each two steps, each from the previous stage's last.ckpt."""
    root = tmp_path_factory.mktemp("edn_stages")
    ckpts: dict[str, str] = {}
    previous = None
    for stage in ("global", "local", "face"):
        cfg = _cfg(f"stage={stage}", *([f"stage.init_from={previous}"] if previous else []), run_dir=root / stage)
        validate_config(cfg)
        train(cfg)
        ckpts[stage] = previous = str(root / stage / "checkpoints" / "last.ckpt")
        assert os.path.isfile(previous)
        assert os.listdir(root / stage / "samples")
    return ckpts


@pytest.mark.slow
def test_stages_chain_and_freeze(chained) -> None:
    g = torch.load(chained["global"], map_location="cpu", weights_only=False)["state_dict"]
    local = torch.load(chained["local"], map_location="cpu", weights_only=False)["state_dict"]
    face = torch.load(chained["face"], map_location="cpu", weights_only=False)["state_dict"]
    # local: G1 loaded from global and frozen; the enhancer is new and trained
    g1 = [k for k in local if k.startswith("netG.generator.global_body.")]
    assert g1 and all(torch.equal(local[k], g[k.replace("global_body.", "body.")]) for k in g1)
    assert any(k.startswith("netG.generator.local_") for k in local)
    # face: the body generator is the local one, unchanged; the face G and D trained
    body = [k for k in face if k.startswith("netG.")]
    assert body and all(torch.equal(face[k], local[k]) for k in body)
    assert any(k.startswith("faceG.") for k in face) and any(k.startswith("faceD.") for k in face)
    assert not any(k.startswith(("netD.", "netDT.")) for k in face)


@pytest.mark.slow
def test_face_stage_refines_only_the_face(chained) -> None:
    cfg = _cfg("stage=face", f"stage.init_from={chained['local']}")
    module = build_module(cfg).eval()
    batch = _batch(cfg)
    with torch.no_grad():
        step = module.prepare_batch(batch)
        assert step["fake_crop"].shape[-1] == 8   # 128 * 32 / 512 (stage face: full 32x64)
        terms = module.generator_loss(step)
    assert set(terms) == {"G_GAN_face", "G_VGG_face"}   # official netDface: no feature matching
    out = module.generate_pair(batch)
    body = module.netG.sequence(batch["label"])
    diff = (out - body).abs().sum(dim=2)  # [B, 2, H, W]
    top, left, s = batch["face_box"][0, 0].tolist()
    outside = diff[0, 0].clone()
    outside[top:top + s, left:left + s] = 0
    assert outside.sum() == 0 and diff[0, 0, top:top + s, left:left + s].sum() > 0
    # the refined frame t (not the body frame) conditions frame t+1, as the official test_fullts.py does
    with torch.no_grad():
        lab1, box1 = batch["label"][:, 1], batch["face_box"][:, 1]
        first = module.next_frame(batch["label"][:, 0], None, batch["face_box"][:, 0])  # unclamped: it conditions
        from_refined = module.refine_face(lab1, module.netG(lab1, first), box1).clamp(-1, 1)
        from_body = module.refine_face(lab1, module.netG(lab1, body[:, 0]), box1).clamp(-1, 1)
    assert torch.equal(out[:, 1], from_refined) and not torch.equal(out[:, 1], from_body)
    # training: frame t+1's body depends on frame t's face residual (gradients reach it through the frozen body G)
    module.train()
    step = module.prepare_batch(batch)
    params = list(module.faceG.parameters())
    g0 = torch.autograd.grad(step["body"][:, 0].sum(), params, retain_graph=True, allow_unused=True)
    g1 = torch.autograd.grad(step["body"][:, 1].sum(), params, allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in g0) and any(g is not None and g.abs().sum() > 0 for g in g1)


@pytest.mark.slow
def test_ddp_two_ranks_stage_global(tmp_path) -> None:
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
    env.pop("WANDB_SERVICE", None)
    args = [*TINY_EDN, "dataset.num_train=4", f"hydra.run.dir={tmp_path}", "trainer.accelerator=cpu",
            "trainer.devices=2", "strategy=ddp"]
    proc = subprocess.run([sys.executable, "run.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stderr
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["condsynth"]["model"] == "edn" and ckpt["global_step"] == 4  # 2 batches per rank x (D + G)


def test_face_crop_not_fitting_the_face_generator_is_a_clear_error() -> None:
    module = build_module(_cfg("stage=face"), for_inference=True)  # face G stride 2 here
    frame = torch.zeros(1, 3, 32, 64)
    with pytest.raises(ValueError, match="face crop is 5x5 px.*stride 2"):
        module.refine_face(frame, frame, torch.tensor([[0, 0, 5]]))
    assert module.refine_face(frame, frame, torch.tensor([[0, 0, 8]])).shape == frame.shape


def test_local_stage_holds_g1_at_lr_0_then_trains_it_jointly() -> None:
    """Official --niter_fix_global: G1 in G's optimizer at learning rate 0, then at G's rate (update_fixed_params)."""
    cfg = _cfg("stage=local", "stage.requires_init=false", "stage.fix_global_epochs=1")
    module = build_module(cfg)
    batch = _batch(cfg)
    (g_cfg, d_cfg) = module.configure_optimizers()
    opt_g, sch = g_cfg["optimizer"], g_cfg["lr_scheduler"]["scheduler"]
    g1 = [p for m in module.resolve_part("generator.global") for p in m.parameters()]
    assert [g["lr"] for g in opt_g.param_groups] == [2e-4, 0.0]
    assert {id(p) for p in opt_g.param_groups[1]["params"]} == {id(p) for p in g1}
    others = [p for p in opt_g.param_groups[0]["params"]]
    before_g1 = [p.detach().clone() for p in g1]
    before_g2 = [p.detach().clone() for p in others]
    module.gan_step(batch, opt_g, d_cfg["optimizer"])
    assert all(torch.equal(a, p) for a, p in zip(before_g1, g1, strict=True))            # held still
    assert any(not torch.equal(a, p) for a, p in zip(before_g2, others, strict=True))    # G2 learns
    assert all(p.grad is not None for p in g1)                                           # but has gradients
    assert module.release_global(opt_g, [sch]) and not module.release_global(opt_g, [sch])
    assert opt_g.param_groups[1]["lr"] == 2e-4 and sch.base_lrs == [2e-4, 2e-4]
    module.gan_step(batch, opt_g, d_cfg["optimizer"])
    assert any(not torch.equal(a, p) for a, p in zip(before_g1, g1, strict=True))        # now joint
    with pytest.raises(ValueError, match="fix_global_epochs=1 .*stage.frozen lists generator.global"):
        build_module(_cfg("stage=local", "stage.requires_init=false", "stage.fix_global_epochs=1",
                          "stage.frozen=[generator.global]"))
    single = build_module(_cfg("stage=local", "stage.requires_init=false", "stage.fix_global_epochs=0"))
    assert len(single.configure_optimizers()[0]["optimizer"].param_groups) == 1          # official default 0


def test_face_stage_crops_both_frames_of_a_pair_with_frame_t_box() -> None:
    """Official training (aligned_dataset.py + pix2pixHD_model_fullts.forward): one face box per item, frame t's,
    crops the labels, generated and real frames of t and t+1 alike."""
    module = build_module(_cfg("stage=face"), for_inference=True)
    gen = torch.Generator().manual_seed(0)
    label = torch.rand(1, 2, 3, 32, 64, generator=gen) * 2 - 1
    image = torch.rand(1, 2, 3, 32, 64, generator=gen) * 2 - 1
    boxes = torch.tensor([[[2, 4, 8], [20, 50, 8]]])   # frame t+1's own box is elsewhere
    with torch.no_grad():
        step = module.prepare_batch({"label": label, "image": image, "face_box": boxes})
    for t in range(2):   # crops are [t-batch, t+1-batch]
        assert torch.equal(step["label_crop"][t], label[0, t, :, 2:10, 4:12])
        assert torch.equal(step["real_crop"][t], image[0, t, :, 2:10, 4:12])
        assert torch.equal(step["body_crop"][t], step["body"][0, t, :, 2:10, 4:12])
    assert torch.equal(step["face_box"], boxes[:, 0])
    with pytest.raises(ValueError, match=r"face_box'\] must be \[B, 2, 3\]"):
        module.prepare_batch({"label": label, "image": image, "face_box": boxes[:, 0]})


def test_local_stage_releases_g1_once_in_a_real_run(tmp_path, capsys) -> None:
    """Through Lightning (its optimizer wrapper): G1 joins once, and the scheduler's base rate for G1 becomes G's, so
    the epoch-end scheduler step does not put G1 back at learning rate 0."""
    cfg = _cfg("stage=local", "stage.requires_init=false", "stage.fix_global_epochs=1", "trainer.max_epochs=3",
               "trainer.limit_train_batches=1", "trainer.limit_val_batches=0", run_dir=tmp_path)
    train(cfg)
    assert capsys.readouterr().out.count("G1 joins the training") == 1
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    base = ckpt["lr_schedulers"][0]["base_lrs"]
    assert base[1] == base[0] > 0
