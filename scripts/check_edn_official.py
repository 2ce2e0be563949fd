#!/usr/bin/env python
"""Check our Everybody Dance Now networks against the official code (carolineec/EverybodyDanceNow) with shared
weights.

    python scripts/check_edn_official.py --official /path/to/EverybodyDanceNow   # a clone of the official repo
    python scripts/check_edn_official.py --official ... --sizes small             # only the small sizes (seconds)

The official networks are built from the clone's ``models/networks.py`` with the calls of
``models/pix2pixHD_model_fullts.py`` (``--label_nc 6 --no_instance``, i.e. G's input = the 3-channel pose label + the
3-channel previous frame, and ``--output_nc 3``):

* ``netG``: ``define_G(6, 3, ngf, 'global' | 'local', n_downsample_global, n_blocks_global, 1, n_blocks_local)``;
* ``netD``: ``define_D(12, ndf, n_layers_D, 'instance', False, num_D, True)`` (the only body D: it sees
  ``cat(label_t, label_t+1, frame_t, frame_t+1)``; ours: the temporal D ``netDT``);
* ``faceGen``: ``define_G(6, 3, 64, 'global', 3, 5)`` (``--faceGtype global``, the README's face stage);
* ``netDface``: ``define_D(6, ..., netD='face')`` = one ``NLayerDiscriminator(ndf=64, n_layers_D, BatchNorm2d)``,

at ``small`` sizes (the official structure with narrow widths; the face D's ndf is fixed at 64 by the official code)
and at the ``paper`` sizes (the official defaults and README commands: global ngf 64, 4 downsamplings, 9 blocks,
num_D 2; local ngf 32, 3 local blocks, num_D 3). Each gets the official init (``weights_init``) plus random
batch-norm scales, shifts and running statistics, and is saved as the official ``save_network`` does (a bare
``state_dict`` in ``latest_net_{G,D,Gface,Dface}.pth``, without the ``num_batches_tracked`` counters that the
PyTorch of the time did not write). Our module (``model=edn stage=global|local|face``) is built with the same sizes
and ``model.official_weights=<that folder>`` and both run on the same random inputs. Printed: the max abs difference
per output (every scale and intermediate feature of the Ds; the face D in eval and train mode).

The official file is imported from the clone, in memory only (nothing is copied here); it needs no change for
PyTorch 2 on the CPU (``ADAPTATIONS`` is empty, the script says so); the official ``define_*`` print each network,
which is silenced. No GPU needed: 25 s and a 4.0 GB peak (the paper-size local G, twice, plus its file) for both
sizes on 2 CPU cores; ``--sizes small``: 7 s, 1 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

# (regex, replacement, why): what a current PyTorch on the CPU needs; the EDN networks.py needs nothing
ADAPTATIONS: list[tuple[str, str, str]] = []

SIZES: dict[str, dict[str, Any]] = {
    "small": {"global": {"ngf": 8, "n_down": 4, "n_blocks": 2}, "local": {"ngf": 4, "n_blocks_local": 1},
              "D": {"ndf": 8, "n_layers": 3}, "num_D": {"global": 2, "local": 3},
              "face_G": {"ngf": 8, "n_down": 3, "n_blocks": 2}, "face_D": {"n_layers": 3}, "hw": (64, 64),
              "face": 32},
    "paper": {"global": {"ngf": 64, "n_down": 4, "n_blocks": 9}, "local": {"ngf": 32, "n_blocks_local": 3},
              "D": {"ndf": 64, "n_layers": 3}, "num_D": {"global": 2, "local": 3},
              "face_G": {"ngf": 64, "n_down": 3, "n_blocks": 5}, "face_D": {"n_layers": 3}, "hw": (64, 64),
              "face": 32},
}


def load_official(repo: Path, verbose: bool = True) -> types.ModuleType:
    """The official ``models/networks.py`` of ``repo`` as a module (adapted in memory as ``ADAPTATIONS`` says)."""
    path = repo / "models" / "networks.py"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found; --official takes a clone of "
                         f"github.com/carolineec/EverybodyDanceNow")
    src = path.read_text()
    lines = []
    for regex, repl, why in ADAPTATIONS:
        src, n = re.subn(regex, repl, src)
        lines.append(f"  {why} [{n}x]")
    module = types.ModuleType("edn_official_networks")
    module.__file__ = str(path)
    exec(compile(src, str(path), "exec"), module.__dict__)
    if verbose:
        print(f"official {path} imported for PyTorch {torch.__version__} on the CPU: "
              + ("adapted in memory:\n" + "\n".join(lines) if lines else "no adaptation needed"))
    return module


def randomize_batch_norm(net: torch.nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def save_network(net: torch.nn.Module, folder: Path, label: str) -> None:
    """As the official ``BaseModel.save_network`` (``latest_net_<label>.pth``, a bare state dict), without the
    batch-norm step counters of PyTorch >= 0.4.1."""
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, folder / f"latest_net_{label}.pth")


def build_official(off: types.ModuleType, size: dict[str, Any], stage: str, seed: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    gl, lo, d = size["global"], size["local"], size["D"]
    body = "local" if stage in ("local", "face") else "global"
    nets: dict[str, torch.nn.Module] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # define_G / define_D print the whole network
        ngf = lo["ngf"] if body == "local" else gl["ngf"]
        nets["G"] = off.define_G(6, 3, ngf, body, gl["n_down"], gl["n_blocks"], 1, lo["n_blocks_local"], "instance")
        if stage == "face":
            fg = size["face_G"]
            nets["Gface"] = off.define_G(6, 3, fg["ngf"], "global", n_downsample_global=fg["n_down"],
                                         n_blocks_global=fg["n_blocks"], n_local_enhancers=0, n_blocks_local=0,
                                         norm="instance")
            nets["Dface"] = off.define_D(6, d["ndf"], size["face_D"]["n_layers"], "instance", False, 1, True,
                                         netD="face")
        else:
            nets["D"] = off.define_D(12, d["ndf"], d["n_layers"], "instance", False, size["num_D"][stage], True)
    for net in nets.values():
        randomize_batch_norm(net, g)
        net.eval()
    return nets


def build_ours(size: dict[str, Any], stage: str, folder: Path) -> Any:
    from lightning_modules.factory import build_module
    from tasks.config import compose_config

    gl, lo, d, fg = size["global"], size["local"], size["D"], size["face_G"]
    num_d = size["num_D"]["local" if stage == "face" else stage]
    overrides = [
        "model=edn", "size=paper", f"stage={stage}",
        f"model.networks.global.ngf={gl['ngf']}", f"model.networks.global.n_downsampling={gl['n_down']}",
        f"model.networks.global.n_blocks={gl['n_blocks']}", f"model.networks.local.ngf={lo['ngf']}",
        f"model.networks.local.n_blocks_local={lo['n_blocks_local']}",
        f"model.networks.discriminator.ndf={d['ndf']}", f"model.networks.discriminator.n_layers={d['n_layers']}",
        f"model.networks.discriminator.num_D={num_d}",
        f"model.networks.face_generator.ngf={fg['ngf']}", f"model.networks.face_generator.n_downsampling={fg['n_down']}",
        f"model.networks.face_generator.n_blocks={fg['n_blocks']}",
        f"model.networks.face_discriminator.n_layers={size['face_D']['n_layers']}",
        "model.losses.frame.perceptual.vgg.weights=null", "model.losses.face.perceptual.vgg.weights=null",
        f"model.official_weights={folder}",
    ]
    module = build_module(compose_config(overrides), for_inference=True)
    return module.eval()


def compare_stage(off: types.ModuleType, size_name: str, stage: str, seed: int,
                  rows: list[tuple[str, float]]) -> None:
    size = SIZES[size_name]
    nets = build_official(off, size, stage, seed)
    with tempfile.TemporaryDirectory(prefix="edn_official_") as tmp:
        for label, net in nets.items():
            save_network(net, Path(tmp), label)
        ours = build_ours(size, stage, Path(tmp))
    h, w = size["hw"]
    g = torch.Generator().manual_seed(seed + 1)
    label0, label1, prev, real0, real1 = (torch.rand(2, 3, h, w, generator=g) * 2 - 1 for _ in range(5))
    tag = f"[{size_name}, stage {stage}]"

    def cmp(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
        assert a.shape == b.shape, (name, tuple(a.shape), tuple(b.shape))
        rows.append((f"{name} {tag}", float((a - b).abs().max())))

    with torch.no_grad():
        G = nets["G"]
        kind = "local" if stage in ("local", "face") else "global"
        cmp(f"{kind} G, label + previous frame", G(torch.cat([label0, prev], 1)), ours.netG(label0, prev))
        cmp(f"{kind} G, first frame (zeros)", G(torch.cat([label0, torch.zeros_like(prev)], 1)), ours.netG(label0))
        i0 = G(torch.cat([label0, torch.zeros_like(prev)], 1))  # official forward: I_0, then I_1 = G(x_1, I_0)
        i1 = G(torch.cat([label1, i0], 1))
        seq = ours.netG.sequence(torch.stack([label0, label1], 1))
        cmp(f"{kind} G, training pair (I_0, I_1)", torch.stack([i0, i1], 1), seq)
        if "D" in nets:
            off_out = nets["D"](torch.cat([label0, label1, real0, real1], 1))  # discriminate_4(s0, s1, i0, i1)
            # what our objective feeds it: cat(stacked labels, stacked frames) (losses/conditional_gan.py)
            fed = torch.cat([ours._stacked(torch.stack([label0, label1], 1)),
                             ours._stacked(torch.stack([real0, real1], 1))], 1)
            our_out = ours.netDT(fed)
            cmp("temporal D input as our objective stacks it vs official cat(s0, s1, i0, i1)",
                fed, torch.cat([label0, label1, real0, real1], 1))
            for s, (a_scale, b_scale) in enumerate(zip(off_out, our_out, strict=True)):
                for j, (a, b) in enumerate(zip(a_scale, b_scale, strict=True)):
                    cmp(f"temporal D (official netD) scale {s} feature {j}", a, b)
        if "Gface" in nets:
            fs = size["face"]
            top, left = 8, 16
            box = torch.tensor([[top, left, fs]] * 2)
            body = G(torch.cat([label0, prev], 1))
            face_label = label0[:, :, top:top + fs, left:left + fs]
            face_body = body[:, :, top:top + fs, left:left + fs]
            residual = nets["Gface"](torch.cat([face_label, face_body], 1))
            cmp("face G residual", residual, ours.faceG.residual(face_label, face_body))
            refined = body.clone()  # official inference: I_0[crop] = initial_I_0[crop] + face_residual_0
            refined[:, :, top:top + fs, left:left + fs] = face_body + residual
            cmp("frame with the face residual (official inference vs next_frame)", refined,
                ours.next_frame(label0, prev, box))
            face = (real0[:, :, top:top + fs, left:left + fs], face_body + residual)
            for mode in ("eval", "train"):
                nets["Dface"].train(mode == "train")
                ours.faceD.train(mode == "train")
                for which, img in zip(("real", "fake"), face, strict=True):
                    x = torch.cat([face_label, img], 1)
                    cmp(f"face D on the {which} face [{mode}]", nets["Dface"](x), ours.faceD(x)[0][-1])
            theirs = {k: v for k, v in nets["Dface"].state_dict().items() if "running" in k}
            mine = {k: v for k, v in ours.faceD.state_dict().items() if "running" in k}
            cmp("face D running statistics after the train-mode passes",
                torch.cat([v.flatten() for v in theirs.values()]), torch.cat([v.flatten() for v in mine.values()]))
    del nets, ours


def release_memory() -> None:
    """Hand the freed networks of a stage back to the OS before the next one (glibc keeps freed arenas)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", required=True, help="a clone of github.com/carolineec/EverybodyDanceNow")
    p.add_argument("--sizes", nargs="+", default=["small", "paper"], choices=sorted(SIZES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=1e-4, help="exit status 1 when a difference exceeds it")
    args = p.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    off = load_official(Path(args.official))
    rows: list[tuple[str, float]] = []
    for size_name in args.sizes:
        for stage in ("global", "local", "face"):
            compare_stage(off, size_name, stage, args.seed, rows)
            release_memory()
    worst = max(d for _, d in rows)
    print(f"official {args.official} vs ours (model=edn), batch 2, 64x64 frames, 32x32 face crops, CPU float32, "
          f"weights shared through latest_net_*.pth and model.official_weights:")
    for name, d in rows:
        print(f"  {name:<96} max |diff| {d:.2e}")
    print(f"max {worst:.2e} ({'within' if worst <= args.tolerance else 'ABOVE'} tolerance {args.tolerance:g})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    raise SystemExit(main())
