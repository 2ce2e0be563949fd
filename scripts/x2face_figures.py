#!/usr/bin/env python
"""X2Face figures on the synthetic test split (unseen identities), from trained checkpoints:

* Table 1 analogue: L1 between generated and driving frames with 1 and with 3 source frames, per checkpoint given;
* Table 2 analogue: pose regression mean absolute error (degrees) of ``pose_from_vector`` on the test frames, per
  axis, against the best constant (the training poses' mean);
* audio: how well the least-squares audio map predicts the driving vector on test frames (R^2 and MAE against the
  training mean), and how well the audio features predict the mouth opening (a ridge fit on training frames);
* audio -> mouth through the map: a linear probe from the driving vector to the mouth opening, fitted on the true
  driving vectors of training frames, read on the test identities from (i) the true driving vectors (the probe's
  ceiling), (ii) the audio map's vectors A(a) and (iii) the reenactment's vectors (``vector_for_audio``: the source
  frame's vector moved by A(a) - A(a_src), pose leakage removed), each against the best constant (the training mean).

    python scripts/x2face_figures.py --run photometric=<run dir> --run identity=<run dir> \
        --pose <pose_code or audio_code run dir> --audio <audio_code run dir> [--samples 64] [--probe-ridge 1e-6]

Each run dir is a ``task=train`` output (its ``.hydra/config.yaml`` rebuilds the model; ``checkpoints/last.ckpt``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def _load(run_dir: str):
    from omegaconf import OmegaConf

    from tasks.builders import build_datamodule
    from tasks.config import register_resolvers
    from tasks.inference import load_for_inference

    register_resolvers()
    cfg = OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml")
    cfg.paths.run_dir = run_dir
    module = load_for_inference(cfg, str(Path(run_dir) / "checkpoints" / "last.ckpt"))
    return cfg, module, build_datamodule(cfg)


def _batch(dm, split: str, n: int):
    from torch.utils.data import default_collate

    ds = dm.make_split(split)
    return default_collate([ds[i] for i in range(min(n, len(ds)))])


def _pose_probe(module, train: dict, test: dict) -> None:
    """Where the pose error comes from: the stage's learned map against closed-form least squares from the driving
    vector to the pose, fitted on the training frames and scored (MAE, degrees) on (a) the training frames
    themselves, (b) held-out frames of the training identities (every 4th), (c) the unseen test identities, and
    (d) those with each identity's mean driving vector removed (identity offsets out, no pose label used)."""
    import torch

    with torch.no_grad():
        v_tr = module.net.driving.driving_vector(train["driving"]).double()
        v_te = module.net.driving.driving_vector(test["driving"]).double()
        learned_tr = torch.rad2deg(module.pose_code.pose_from_vector(v_tr.float())).double()
    p_tr, p_te = train["driving_pose"].double(), test["driving_pose"].double()
    held = torch.arange(len(v_tr)) % 4 == 0

    def lstsq(x, y, ridge=1e-6):
        a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        w = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=x.dtype), a.T @ y)
        return lambda z: torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1) @ w

    fit_all, fit_part = lstsq(v_tr, p_tr), lstsq(v_tr[~held], p_tr[~held])
    mae = lambda a, b: float((a - b).abs().mean())  # noqa: E731
    print("pose probe, MAE in degrees (mean over pitch, yaw, roll):")
    print(f"  training frames: learned map {mae(learned_tr, p_tr):.2f}, least squares {mae(fit_all(v_tr), p_tr):.2f},"
          f" constant {mae(p_tr.mean(0), p_tr):.2f}")
    print(f"  held-out frames of training identities: least squares {mae(fit_part(v_tr[held]), p_tr[held]):.2f}, "
          f"constant {mae(p_tr[~held].mean(0), p_tr[held]):.2f}")
    print(f"  unseen test identities: least squares {mae(fit_all(v_te), p_te):.2f}, constant "
          f"{mae(p_tr.mean(0), p_te):.2f}")

    def centred(v, ids):  # each identity's mean driving vector removed (no pose label used)
        out = v.clone()
        for i in ids.unique():
            out[ids == i] -= v[ids == i].mean(0)
        return out

    fit_c = lstsq(centred(v_tr, train["identity"]), p_tr)
    print(f"  unseen test identities, driving vectors centred per identity: least squares "
          f"{mae(fit_c(centred(v_te, test['identity'])), p_te):.2f}")


def linear_probe(x: torch.Tensor, y: torch.Tensor, ridge: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """``y ~ x @ w + b`` fitted in float64 by ridge on the features standardised with ``x``'s mean and deviation
    (``ridge`` on ``w`` only, the intercept unpenalised; a tiny ``ridge`` is least squares). ``x`` [N, D], ``y`` [N] or
    [N, C]; returns the map from new ``x`` [M, D] to predictions shaped like ``y``'s rows."""
    x, y = x.double(), y.double()
    mu, sd = x.mean(0), x.std(0)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    xs = (x - mu) / sd
    y_mean = y.mean(0)
    w = torch.linalg.solve(xs.T @ xs + ridge * torch.eye(x.shape[1], dtype=x.dtype), xs.T @ (y - y_mean))
    return lambda z: ((z.double() - mu) / sd) @ w + y_mean


def probe_scores(pred: torch.Tensor, target: torch.Tensor, constant: float | torch.Tensor) -> dict[str, float]:
    """MAE of ``pred`` against ``target``, MAE of the ``constant`` predictor, the Pearson correlation of ``pred``
    with ``target`` (NaN when either does not vary) and the standard deviations of both (how far ``pred`` moves)."""
    pred, target = pred.double().flatten(), target.double().flatten()
    pc, tc = pred - pred.mean(), target - target.mean()
    denom = float(pc.norm() * tc.norm())
    return {"mae": float((pred - target).abs().mean()),
            "constant_mae": float((torch.as_tensor(constant, dtype=target.dtype) - target).abs().mean()),
            "corr": float(pc @ tc) / denom if denom > 0 else float("nan"),
            "std": float(pred.std()), "target_std": float(target.std())}


def _mouth_probe(module: Any, train: dict, test: dict, ridge: float) -> dict[str, dict[str, float]]:
    """Does audio drive the mouth through the audio map? A linear probe driving vector -> mouth opening is fitted on
    the true driving vectors of the training frames, then read on the test identities from the true vectors (its
    ceiling), the source frame's own vector (no audio), the map's A(a), and ``vector_for_audio`` (the source frame's
    vector + A(a) - A(a_src) with pose leakage removed, as at reenactment; a_src: the source frame's audio)."""
    with torch.no_grad():
        v_tr = module.net.driving.driving_vector(train["driving"])
        src = test["source"][:, 0]
        vectors = {
            "true driving vector (ceiling)": module.net.driving.driving_vector(test["driving"]),
            "source frame's vector (no audio)": module.net.driving.driving_vector(src),
            "audio map A(a)": module.audio_code(test["driving_audio"]),
            "vector_for_audio (reenactment)": module.vector_for_audio(src, test["driving_audio"],
                                                                      test["source_audio"]),
        }
    m_tr, m_te = train["driving_mouth"].double(), test["driving_mouth"].double()
    probe = linear_probe(v_tr, m_tr, ridge)
    constant = float(m_tr.mean())
    scores = {name: probe_scores(probe(v), m_te, constant) for name, v in vectors.items()}
    print("\nAudio -> mouth through the driving vector: a linear probe vector -> mouth opening (least squares, "
          f"ridge {ridge:g}, fitted on {len(v_tr)} training frames' true driving vectors), on the test split")
    fit = probe_scores(probe(v_tr), m_tr, constant)
    print(f"  training frames (the fit's own): probe MAE {fit['mae']:.3f}, constant {fit['constant_mae']:.3f}, "
          f"corr {fit['corr']:.2f}")
    print(f"  {'probe read from':<34} {'MAE':>7} {'constant':>9} {'corr':>6} {'std':>6}  (test mouth std "
          f"{float(m_te.std()):.3f})")
    for name, sc in scores.items():
        print(f"  {name:<34} {sc['mae']:>7.3f} {sc['constant_mae']:>9.3f} {sc['corr']:>6.2f} {sc['std']:>6.3f}")
    return scores


def main(argv: list[str] | None = None) -> None:
    import torch.nn.functional as F

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", default=[], help="name=<run dir> for the L1 table")
    p.add_argument("--pose", default=None)
    p.add_argument("--audio", default=None)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--probe-ridge", type=float, default=1e-6,
                   help="ridge of the mouth probe on standardised driving vectors (tiny: least squares)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    if args.run:
        print("\nTable 1 analogue: test L1 (generated vs driving frame), unseen identities")
        print(f"{'checkpoint':<14} {'1 source':>10} {'3 sources':>10}")
    for item in args.run:
        name, run = item.split("=", 1)
        cfg, module, dm = _load(run)
        dm.num_test = args.samples
        b = _batch(dm, "test", args.samples)
        with torch.no_grad():
            l1 = [float(F.l1_loss(module.generate(b, num_sources=k), b["driving"])) for k in (1, 3)]
        print(f"{name:<14} {l1[0]:>10.4f} {l1[1]:>10.4f}")
    if args.pose:
        cfg, module, dm = _load(args.pose)
        dm.num_test, dm.num_train = args.samples, args.samples * 4
        test, train = _batch(dm, "test", args.samples), _batch(dm, "train", args.samples * 4)
        with torch.no_grad():
            pred = torch.rad2deg(module.pose_code.pose_from_vector(module.net.driving.driving_vector(test["driving"])))
        err = (pred - test["driving_pose"]).abs().mean(0)
        const = (train["driving_pose"].mean(0) - test["driving_pose"]).abs().mean(0)
        print("\nTable 2 analogue: pose MAE in degrees on the test split (pitch, yaw, roll, mean)")
        print(f"{'pose_code':<14} " + " ".join(f"{v:>7.2f}" for v in err.tolist()) + f" {float(err.mean()):>7.2f}")
        print(f"{'constant':<14} " + " ".join(f"{v:>7.2f}" for v in const.tolist()) + f" {float(const.mean()):>7.2f}")
        _pose_probe(module, train, test)
    if args.audio:
        cfg, module, dm = _load(args.audio)
        dm.num_test, dm.num_train = args.samples, args.samples * 4
        test, train = _batch(dm, "test", args.samples), _batch(dm, "train", args.samples * 4)
        with torch.no_grad():
            v = module.net.driving.driving_vector(test["driving"])
            v_train = module.net.driving.driving_vector(train["driving"])
            pred = module.audio_code(test["driving_audio"])
        sse = float(((pred - v) ** 2).sum())
        sst = float(((v - v_train.mean(0)) ** 2).sum())
        print("\nAudio -> driving vector on the test split (the map fitted in stage audio_code)")
        print(f"MAE {float((pred - v).abs().mean()):.4f} vs constant {float((v - v_train.mean(0)).abs().mean()):.4f}; "
              f"R^2 {1 - sse / sst:.3f}")
        x = train["driving_audio"].double()
        mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
        xa = torch.cat([(x - mu) / sd, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        w = torch.linalg.solve(xa.T @ xa + 50.0 * torch.eye(xa.shape[1], dtype=x.dtype),
                               xa.T @ train["driving_mouth"].double()[:, None])
        xt = torch.cat([(test["driving_audio"].double() - mu) / sd, torch.ones(len(v), 1, dtype=x.dtype)], 1)
        m_err = float((xt @ w - test["driving_mouth"].double()[:, None]).abs().mean())
        m_const = float((train["driving_mouth"].double().mean() - test["driving_mouth"].double()).abs().mean())
        print(f"audio features -> mouth opening (ridge): MAE {m_err:.3f} vs constant {m_const:.3f}")
        _mouth_probe(module, train, test, args.probe_ridge)


if __name__ == "__main__":
    main()
