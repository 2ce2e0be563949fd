"""X2Face and face_id modules: every stage runs through the real train task on tiny sizes and the stages chain
(face_id -> photometric -> identity -> pose_code -> audio_code), the photometric loss falls on a fixed batch, the
identity stage's layer split, the identity network frozen and absent from checkpoints, the pose and audio maps beat a
constant predictor, paper defaults, and the start-up errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import default_collate

from lightning_modules.checkpoints import read_checkpoint
from lightning_modules.factory import build_module
from lightning_modules.stages import StageError
from tasks.builders import build_datamodule
from tasks.config import CONF_DIR, ConfigError, validate_config
from tasks.summary import summarize
from tasks.train import train
from tests.conftest import TINY_FACE_ID, TINY_X2FACE, compose_config


def _cfg(run_dir, *overrides: str, base=TINY_X2FACE):
    return compose_config([*base, *overrides], run_dir, tiny=False)


def _batch(cfg, split: str = "train", n: int = 2) -> dict:
    dm = build_datamodule(cfg)
    ds = dm.make_split(split)
    return default_collate([ds[i] for i in range(n)])


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, str]:
    """face_id, then the four X2Face stages, each two steps through task=train."""
    root = tmp_path_factory.mktemp("x2face")
    ckpts: dict[str, str] = {}
    train(compose_config(TINY_FACE_ID, root / "face_id", tiny=False))
    ckpts["face_id"] = str(root / "face_id" / "checkpoints" / "last.ckpt")
    extra = {"photometric": [], "identity": [f"model.identity_weights={ckpts['face_id']}"], "pose_code": [],
             "audio_code": []}
    previous = None
    for stage in ("photometric", "identity", "pose_code", "audio_code"):
        overrides = [f"stage={stage}", *extra[stage]] + ([f"stage.init_from={ckpts[previous]}"] if previous else [])
        cfg = _cfg(root / stage, *overrides)
        validate_config(cfg)
        train(cfg)
        ckpts[stage] = str(root / stage / "checkpoints" / "last.ckpt")
        assert os.path.isfile(ckpts[stage])
        previous = stage
    return ckpts


def test_stages_chain_and_checkpoints(chain) -> None:
    for stage in ("photometric", "identity", "pose_code", "audio_code"):
        ckpt = read_checkpoint(chain[stage])
        assert ckpt["condsynth"]["model"] == "x2face" and ckpt["condsynth"]["stage"] == stage
        keys = ckpt["state_dict"].keys()
        assert any(k.startswith("net.embedding.") for k in keys)
        assert not any(k.startswith("identity_") for k in keys), "the identity network must not be stored"
    assert read_checkpoint(chain["face_id"])["condsynth"]["model"] == "face_id"
    audio = read_checkpoint(chain["audio_code"])["state_dict"]
    assert bool(audio["audio_code.fitted"]) and float(audio["audio_code.weight"].abs().sum()) > 0
    # the networks did not move in the pose and audio stages
    pose = read_checkpoint(chain["pose_code"])["state_dict"]
    ident = read_checkpoint(chain["identity"])["state_dict"]
    assert all(torch.equal(pose[k], ident[k]) for k in ident if k.startswith("net.") and "num_batches" not in k)


def test_identity_stage_layer_split_and_frozen_network(chain, tmp_path) -> None:
    cfg = _cfg(tmp_path, "stage=identity", f"stage.init_from={chain['photometric']}",
               f"model.identity_weights={chain['face_id']}")
    module = build_module(cfg)
    module.train()
    same, other = module.identity_same, module.identity_other
    assert same.layers == ("conv2", "conv3", "conv4", "conv5", "conv7") and same.weight == 1.0
    assert other.layers == ("conv6", "conv7") and other.weight == pytest.approx(0.1)
    assert same.network is other.network and not same.network.training
    # the optimizer gets lr 1e-4 from the stage and only the two networks' parameters
    opt = module.configure_optimizers()[0]["optimizer"]
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in module.net.parameters()}
    terms = module.loss_terms(_batch(cfg))
    assert set(terms) == {"photometric", "identity_same", "identity_other"}
    sum(terms.values()).backward()
    assert all(p.grad is None for p in same.network.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.net.embedding.parameters())
    # the face_id weights were loaded (not a random network)
    fid = read_checkpoint(chain["face_id"])["state_dict"]
    assert torch.equal(same.network.fc7.weight, fid["classifier.fc7.weight"])


def test_photometric_stage_lowers_l1_on_a_fixed_batch(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, "model.optimizer.lr=0.05")
    module = build_module(cfg)
    module.train()
    batch = _batch(cfg, n=2)
    opt = module.configure_optimizers()[0]["optimizer"]
    losses = []
    for _ in range(25):
        terms = module.loss_terms(batch)
        losses.append(float(terms["photometric"]))
        opt.zero_grad()
        terms["photometric"].backward()
        opt.step()
    assert min(losses[-5:]) < 0.7 * losses[0], losses


def test_pose_and_audio_regressions_beat_a_constant(chain, tmp_path) -> None:
    """Held-out check on the synthetic ground truth: least squares from the (tiny, barely trained) driving vectors to
    the pose, and from the audio features to the mouth opening they drive, beat the best constant (the training mean)
    on other samples. The errors are printed (pytest -s); the demo-size figures are in docs/papers/x2face.md."""
    cfg = _cfg(tmp_path, "stage=pose_code", f"stage.init_from={chain['identity']}", "dataset.num_train=96",
               "dataset.frames_per_video=40", "dataset.num_identities=6")
    module = build_module(cfg).eval()
    ds = build_datamodule(cfg).make_split("train")
    batch = default_collate([ds[i] for i in range(96)])
    with torch.no_grad():
        v = module.net.driving.driving_vector(batch["driving"]).double()
    fit, held = slice(0, 64), slice(64, 96)

    def held_out_errors(x: torch.Tensor, y: torch.Tensor, ridge: float) -> tuple[float, float]:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        a = x[fit]
        w = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=x.dtype), a.T @ y[fit])
        return float((x[held] @ w - y[held]).abs().mean()), float((y[fit].mean(0) - y[held]).abs().mean())

    pose_err, pose_const = held_out_errors(v / v.std(0).clamp(min=1e-8), batch["driving_pose"].double(), 1e-3)
    audio = batch["driving_audio"].double()
    audio = (audio - audio[fit].mean(0)) / audio[fit].std(0).clamp(min=1e-6)
    mouth_err, mouth_const = held_out_errors(audio, batch["driving_mouth"].double()[:, None], 50.0)
    print(f"pose MAE {pose_err:.2f} deg vs constant {pose_const:.2f}; mouth MAE {mouth_err:.3f} vs {mouth_const:.3f}")
    assert pose_err < pose_const and mouth_err < mouth_const


def test_pose_and_audio_driving(chain, tmp_path) -> None:
    cfg = _cfg(tmp_path, "stage=audio_code", f"stage.init_from={chain['pose_code']}")
    module = build_module(cfg)
    from tasks.inference import load_for_inference
    module = load_for_inference(cfg, chain["audio_code"])
    batch = _batch(cfg, split="test")
    src = batch["source"][:, 0]
    with torch.no_grad():
        v_pose = module.vector_for_pose(src, batch["driving_pose"])
        v_audio = module.vector_for_audio(src, batch["driving_audio"], batch["source_audio"])
        out = module.net.from_vector(v_pose, batch["source"])
    assert v_pose.shape == v_audio.shape == (2, 8) and out.shape == (2, 3, 32, 32)
    # driving with the source's own pose keeps the source's driving vector
    v_src = module.net.driving.driving_vector(src)
    same = module.pose_code.retarget(v_src, module.pose_code.pose_from_vector(v_src))
    assert torch.allclose(same, v_src, atol=1e-5)
    rows = module.sample_images(batch)
    assert {"source", "embedded", "driving", "generated"} <= set(rows)
    # an identity-stage checkpoint loads for inference without the identity network
    ident = load_for_inference(_cfg(tmp_path / "i", "stage=identity"), chain["identity"])
    assert ident.identity_same is None and ident.generate(batch).shape == (2, 3, 32, 32)


def test_paper_defaults_and_summary(tmp_path) -> None:
    cfg = compose_config(["model=x2face", "size=paper"], tmp_path, tiny=False)
    m, d = cfg.model, cfg.dataset
    assert (m.depth, m.ngf, m.bottleneck, m.size_multiple, m.align_corners) == (8, 64, 128, 256, True)
    assert (m.optimizer._target_, m.optimizer.lr, m.optimizer.momentum) == ("torch.optim.SGD", 1e-3, 0.9)
    assert (m.scheduler.factory.factor, m.scheduler.monitor) == (0.1, "val/loss")
    assert (d.batch_size, list(d.image_size), d.num_sources, d.eval_sources) == (16, [256, 256], 1, 3)
    assert list(m.losses.identity_same.layers) == ["conv2", "conv3", "conv4", "conv5", "conv7"]
    assert (list(m.losses.identity_other.layers), m.losses.identity_other.weight) == (["conv6", "conv7"], 0.1)
    ident = compose_config(["model=x2face", "size=paper", "stage=identity"], tmp_path, tiny=False)
    assert ident.stage.lr == 1e-4 and ident.stage.previous == "photometric"
    rows = {r["name"]: r for r in summarize(cfg)}
    assert rows["embedding"]["params"] == 39_157_760 and rows["driving"]["params"] == 25_614_080
    assert rows["embedding"]["output"] == "1x3x256x256 + 1x512x1x1".replace(" + ", "") or "1x3x256x256" in \
        rows["embedding"]["output"]
    assert "1x128x1x1" in rows["driving"]["output"]


def test_start_up_errors(chain, tmp_path) -> None:
    with pytest.raises(StageError, match="stage.init_from is not set"):
        validate_config(_cfg(tmp_path, "stage=identity"))
    with pytest.raises(ValueError, match="model.identity_weights"):
        build_module(_cfg(tmp_path, "stage=identity", f"stage.init_from={chain['photometric']}"))
    with pytest.raises(StageError, match="'x2face' checkpoint"):
        build_module(_cfg(tmp_path, "stage=identity", f"stage.init_from={chain['photometric']}",
                          f"model.identity_weights={chain['photometric']}"))
    with pytest.raises(StageError, match="trained with model 'face_id'"):
        build_module(_cfg(tmp_path, "stage=pose_code", f"stage.init_from={chain['face_id']}"))
    with pytest.raises(StageError, match="checkpoint of stage 'photometric'"):
        build_module(_cfg(tmp_path, "stage=audio_code", f"stage.init_from={chain['photometric']}"))
    with pytest.raises(Exception, match=r"dataset.image_size=48 does not fit the U-Net's 2\*\*depth=32 \(5 stride-2"):
        build_datamodule(_cfg(tmp_path, "dataset.image_size=[48,48]"))
    with pytest.raises(ConfigError, match="does not belong to model 'x2face'"):
        validate_config(_cfg(tmp_path, "stage=classify"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_module(_cfg(tmp_path, "stage=identity", f"stage.init_from={chain['photometric']}",
                          "model.identity_weights=/nope/last.ckpt"))


# ------------------------------------------------------------------------------------------- task=reenact
def _reenact_cfg(tmp_path, chain, *overrides: str):
    return _cfg(tmp_path / "run", "task=reenact", "stage=audio_code", f"task.ckpt_path={chain['audio_code']}",
                *overrides)


def _frames(tmp_path, n: int = 3) -> tuple[str, str]:
    from torchvision.utils import save_image

    from datamodules.x2face import SyntheticFaceVideos

    videos = SyntheticFaceVideos(0, 0, 1, 1, 10, 32)
    src, drv = tmp_path / "source", tmp_path / "driving"
    src.mkdir()
    drv.mkdir()
    save_image(videos.frame(0, 0, 0), src / "0.png")
    for t in range(n):
        save_image(videos.frame(0, 0, t + 1), drv / f"{t}.png")
    return str(src), str(drv)


def _count_frames(path: str) -> int:
    import av

    with av.open(path) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def test_reenact_by_frames_poses_and_audio(chain, tmp_path) -> None:
    from datamodules.x2face import write_wav
    from tasks.x2face.reenact import reenact

    src, drv = _frames(tmp_path)
    out = reenact(_reenact_cfg(tmp_path, chain, f"task.source={src}", f"task.driving={drv}"))
    assert out["frames"] == 3 and out["fps"] > 0 and all(_count_frames(p) == 3 for p in out["videos"])
    poses = tmp_path / "poses.csv"
    poses.write_text("pitch,yaw,roll\n0,0,0\n0,20,0\n10,-20,5\n0,0,-10\n")
    out = reenact(_reenact_cfg(tmp_path / "p", chain, f"task.source={src}", f"task.poses={poses}"))
    assert out["frames"] == 4
    wav = tmp_path / "speech.wav"
    write_wav(str(wav), np.sin(np.arange(4800) / 16000 * 2 * np.pi * 200) * 0.3, 16000)  # 0.3 s
    out = reenact(_reenact_cfg(tmp_path / "a", chain, f"task.source={src}", f"task.audio={wav}"))
    assert out["frames"] == 7
    import av  # issue 21: the audio-driven videos carry the driving audio

    for path in out["videos"]:
        with av.open(path) as c:
            assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.sample_rate == 16000
            assert 0.25 < sum(f.samples for f in c.decode(audio=0)) / 16000 < 0.4


def test_reenact_bad_inputs(chain, tmp_path) -> None:
    from datamodules.x2face import write_wav
    from tasks.x2face.reenact import reenact

    src, drv = _frames(tmp_path, 1)
    poses = tmp_path / "poses.csv"
    poses.write_text("0,0,0\n0,20,0\n")
    with pytest.raises(ValueError, match=r"has 2 poses but task.num_frames=3"):
        reenact(_reenact_cfg(tmp_path, chain, f"task.source={src}", f"task.poses={poses}", "task.num_frames=3"))
    (tmp_path / "bad.csv").write_text("0,0\n")
    with pytest.raises(ValueError, match="line 1 has 2 values"):
        reenact(_reenact_cfg(tmp_path, chain, f"task.source={src}", f"task.poses={tmp_path / 'bad.csv'}"))
    write_wav(str(tmp_path / "short.wav"), np.zeros(100), 16000)
    with pytest.raises(ValueError, match="is too short"):
        reenact(_reenact_cfg(tmp_path, chain, f"task.source={src}", f"task.audio={tmp_path / 'short.wav'}"))
    zero_rate = bytearray((tmp_path / "short.wav").read_bytes())
    zero_rate[24:28] = bytes(4)  # the fmt chunk's sample rate: 0 Hz
    (tmp_path / "zero_rate.wav").write_bytes(bytes(zero_rate))
    with pytest.raises(ValueError, match="zero_rate.wav says its sample rate is 0 Hz"):
        reenact(_reenact_cfg(tmp_path, chain, f"task.source={src}", f"task.audio={tmp_path / 'zero_rate.wav'}"))
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(ValueError, match="cannot (open|decode) video task.driving=.*corrupt.mp4"):
        reenact(_reenact_cfg(tmp_path, chain, f"task.source={src}", f"task.driving={tmp_path / 'corrupt.mp4'}"))
    with pytest.raises(ConfigError, match="exactly one driver"):
        reenact(_reenact_cfg(tmp_path, chain, f"task.source={src}", f"task.driving={drv}", f"task.poses={poses}"))
    with pytest.raises(FileNotFoundError, match="task.source=/nope does not exist"):
        reenact(_reenact_cfg(tmp_path, chain, "task.source=/nope", f"task.driving={drv}"))


@pytest.mark.slow
def test_ddp_photometric_two_cpu_processes(tmp_path) -> None:
    """Stage photometric under 2-process DDP (gloo): no unused-parameter error (pose and audio maps frozen), every
    network parameter stepped once per batch, one checkpoint by rank 0, validation L1 synced."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    run_dir = tmp_path / "ddp"
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HYDRA_FULL_ERROR="1", OMP_NUM_THREADS="1")
    env.pop("WANDB_SERVICE", None)
    proc = subprocess.run([sys.executable, "run.py", *TINY_X2FACE, "dataset.num_train=8", f"hydra.run.dir={run_dir}",
                           "trainer.accelerator=cpu", "trainer.devices=2", "strategy=ddp"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stderr and proc.stdout.count("condsynth: finished") == 1
    after = read_checkpoint(str(run_dir / "checkpoints" / "last.ckpt"))
    assert after["global_step"] == 2  # 2 batches of 2 per rank
    (opt,) = after["optimizer_states"]
    assert len(opt["state"]) == len(opt["param_groups"][0]["params"])
    assert all(s.get("momentum_buffer") is not None for s in opt["state"].values())  # SGD stepped every parameter


def test_face_id_demo_optimizer_is_adam_without_sgds_arguments(tmp_path) -> None:
    """size=demo replaces (not merges) model.optimizer by Adam 1e-3: no momentum or weight decay left over from the
    paper's SGD recipe, and model.optimizer.lr= still overrides it."""
    for extra, lr in (((), 1e-3), (("model.optimizer.lr=3e-4",), 3e-4)):
        cfg = _cfg(tmp_path, *extra, base=TINY_FACE_ID)
        assert dict(cfg.model.optimizer) == {"_target_": "torch.optim.Adam", "_partial_": True, "lr": lr}
        opt = build_module(cfg).configure_optimizers()[0]["optimizer"]
        assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == lr and opt.defaults["weight_decay"] == 0


def test_face_id_trains_with_vgg_faces_sgd_recipe_thanks_to_he_init(tmp_path) -> None:
    """model=face_id's optimizer is VGG-Face's (SGD, lr 1e-2, momentum 0.9, weight decay 5e-4; size=demo swaps in
    Adam); with He init it fits a fixed batch, with PyTorch's default init the same recipe barely moves (the reason
    for the init key)."""
    # the paper's optimizer (size=paper) at size=tiny's widths and data (conf/model_sizes/face_id/tiny.yaml)
    tiny = OmegaConf.load(Path(CONF_DIR) / "model_sizes" / "face_id" / "tiny.yaml")
    flat = {**{f"model.networks.classifier.{k}": v for k, v in tiny.model.networks.classifier.items()},
            **{f"dataset.{k}": v for k, v in tiny.dataset.items()}}
    base = ["model=face_id", "size=paper", "trainer=debug", "logger=csv",
            *(f"{k}={list(v) if OmegaConf.is_list(v) else v}".replace(" ", "") for k, v in flat.items())]
    cfg = _cfg(tmp_path, "dataset.batch_size=8", "dataset.num_train=8", base=base)
    assert cfg.model.optimizer.lr == 1e-2 and cfg.model.optimizer.momentum == 0.9
    assert cfg.model.optimizer.weight_decay == 5e-4 and cfg.model.networks.classifier.init == "kaiming"
    batch = _batch(cfg, n=8)
    final = {}
    for init in ("kaiming", "default"):
        torch.manual_seed(0)
        cfg.model.networks.classifier.init = init
        module = build_module(cfg)
        opt = module.configure_optimizers()[0]["optimizer"]
        assert isinstance(opt, torch.optim.SGD)
        losses = []
        for _ in range(40):
            loss = module.loss_terms(batch)["cross_entropy"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        final[init] = (losses[0], min(losses[-5:]))
    # the best a network that ignores the image can do: the entropy of the batch's label frequencies
    freq = torch.bincount(batch["label"]).float() / len(batch["label"])
    prior = float(-(freq[freq > 0] * freq[freq > 0].log()).sum())
    assert final["kaiming"][1] < 0.5 * prior                                 # He init: learns from the images
    assert final["default"][1] > 0.95 * prior                                # default init: only the label prior


def test_audio_map_ridge_with_held_out_identities() -> None:
    """More features than frames: plain least squares (the official fit) over-fits; ridge chosen on held-out
    identities predicts those identities better, and its standardisation folds back into one linear map."""
    import numpy as np
    from sklearn.linear_model import Ridge

    from lightning_modules.x2face import fit_audio_map, r2_score, ridge_fit

    rng = np.random.default_rng(0)
    n, f = 80, 200
    x = rng.normal(size=(n, f)) * rng.uniform(0.5, 3.0, f)
    y = x[:, :3] @ np.array([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]]) + 0.5 * rng.normal(size=(n, 2))
    groups = np.repeat(np.arange(8), 10)                    # 8 identities, 10 frames each
    w, b, alpha, scores = fit_audio_map(x, y, groups, [0.0, 10.0, 100.0, 1000.0], 0.25)
    assert set(scores) == {0.0, 10.0, 100.0, 1000.0} and alpha > 0 and scores[alpha] > scores[0.0]
    assert scores[alpha] == max(scores.values())
    x_new = rng.normal(size=(200, f)) * x.std(0)
    y_new = x_new[:, :3] @ np.array([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]])
    w0, b0 = ridge_fit(x, y, 0.0)
    assert r2_score(x_new @ w + b, y_new, y.mean(0)) > r2_score(x_new @ w0 + b0, y_new, y.mean(0))
    mu, sd = x.mean(0), x.std(0)                             # the fold-back equals Ridge on standardised inputs
    ref = Ridge(alpha=alpha).fit((x - mu) / sd, y).predict((x_new - mu) / sd)
    assert np.allclose(x_new @ w + b, ref, atol=1e-8)
    w1, b1, a1, s1 = fit_audio_map(x, y, groups, [0.0], 0.0)  # the official setting: least squares, no hold-out
    assert a1 == 0.0 and s1 == {} and np.allclose(w1, w0) and np.allclose(b1, b0)


def _figures_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "x2face_figures.py"
    spec = importlib.util.spec_from_file_location("x2face_figures", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mouth_probe_on_hand_made_data(chain, tmp_path) -> None:
    """scripts/x2face_figures.py's mouth probe: vectors that are an exact linear function of the mouth opening give
    ~0 error and correlation 1, the constant's MAE is the training mean's; on the chain's audio_code checkpoint, a
    mouth opening made an exact linear function of the true driving vectors is read back from them (the ceiling row)
    and the reenactment row is the probe applied to ``vector_for_audio``."""
    from tasks.inference import load_for_inference

    fig = _figures_script()
    gen = torch.Generator().manual_seed(0)
    m = torch.rand(40, generator=gen)
    mix = torch.randn(1, 6, generator=gen)
    v = m[:, None] @ mix + torch.randn(6, generator=gen)             # 6-d vectors, exactly linear in m
    probe = fig.linear_probe(v[:30], m[:30], ridge=1e-9)
    sc = fig.probe_scores(probe(v[30:]), m[30:], m[:30].mean())
    assert sc["mae"] < 1e-6 and sc["corr"] == pytest.approx(1.0, abs=1e-9)
    assert sc["std"] == pytest.approx(sc["target_std"], rel=1e-6)
    assert sc["constant_mae"] == pytest.approx(float((m[30:] - m[:30].mean()).abs().mean()), rel=1e-6)
    assert np.isnan(fig.probe_scores(torch.full((5,), 0.3), m[:5], 0.3)["corr"])  # a constant has no correlation

    cfg = _cfg(tmp_path, "stage=audio_code", f"stage.init_from={chain['pose_code']}", "dataset.num_train=24",
               "dataset.num_test=4")
    module = load_for_inference(cfg, chain["audio_code"])
    train, test = _batch(cfg, "train", 24), _batch(cfg, "test", 4)
    coef = torch.randn(8, generator=gen)
    with torch.no_grad():
        for b in (train, test):
            b["driving_mouth"] = module.net.driving.driving_vector(b["driving"]) @ coef + 0.5
        v_audio = module.vector_for_audio(test["source"][:, 0], test["driving_audio"], test["source_audio"])
    scores = fig._mouth_probe(module, train, test, ridge=1e-9)
    assert scores["true driving vector (ceiling)"]["mae"] < 1e-4
    expected = (v_audio.double() @ coef.double() + 0.5 - test["driving_mouth"].double()).abs().mean()
    assert scores["vector_for_audio (reenactment)"]["mae"] == pytest.approx(float(expected), abs=1e-4)
