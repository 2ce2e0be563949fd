#!/usr/bin/env python
"""Check our X2Face against the official code (oawiles/X2Face) with shared weights.

    python scripts/check_x2face_official.py --official /path/to/X2Face   # a clone of github.com/oawiles/X2Face

The official model (``UnwrappedFace.UnwrappedFaceWeightedAverage(output_num_channels=2, input_num_channels=3,
inner_nc=128)``, as its demo notebook builds it) is built from the official files in ``<repo>/UnwrapMosaic`` with
random weights (its own xavier init, then random batch-norm scales, shifts and running statistics), saved in the
official checkpoint format (``x2face_model.pth``: ``{"state_dict": ..., "optimizer": ...}`` as ``train_model.py``
writes it, without the ``num_batches_tracked`` entries that PyTorch < 0.4.1 did not have), loaded through our
documented override (``model=x2face size=paper model.official_weights=<file>``) and both are run on the same
inputs. Printed: the max abs difference of

* the embedding network's output (flow + confidence) and of the driving network's output (its 2-channel flow);
* the driving vector: the innermost conv's output (what the official Audio2Face notebook hooks and replaces) against
  ``DrivingNet.driving_vector``;
* the generated frame with 1 and 3 source frames (official ``forward(driving, *sources)``), in eval mode and in
  train mode (batch statistics), and the batch-norm running statistics that the train-mode passes leave;
* the frame generated from a given driving vector (official: a forward hook that replaces the innermost conv's
  output, as the Audio2Face notebook does) against ``X2Face.from_vector``.

The official files are read from the given clone and adapted at load time to a current PyTorch, in memory only
(nothing is copied into this repository); each adaptation is printed (see ``ADAPTATIONS``). The check needs no GPU
(``--device cuda`` if one is there): about a minute and 2 GB of memory on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# (file pattern, regex, replacement, why): what a current PyTorch needs, nothing else
ADAPTATIONS = [
    ("UnwrappedFace.py", None, None,
     "tabs expanded to 8 columns (one line of UnwrappedFaceWeightedAveragePose mixes spaces with tabs: a TabError "
     "in Python 3)"),
    ("*", r"\.cuda\(\)", "", "`.cuda()` dropped: tensors and modules stay on the inputs' device"),
    ("*", r"assert\(torch\.cuda\.is_available\(\)\)", "pass", "define_G's CUDA assertion dropped"),
    ("*", r"init\.uniform\(m\.weight\.data, 1\.0, 0\.02\)", "init.uniform_(m.weight.data, 0.02, 1.0)",
     "batch-norm init uniform(1.0, 0.02) written low-high (PyTorch >= 1.x rejects from > to; the same interval)"),
    ("*", r"nn\.Upsample\(scale_factor=2, mode='bilinear'\)",
     "nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True)",
     "bilinear nn.Upsample with align_corners=True, PyTorch <= 0.3's behaviour (0.4 changed the default)"),
    ("UnwrappedFace.py", r"nn\.functional\.grid_sample\(([^()]*(?:\([^()]*\))?[^()]*)\)",
     r"nn.functional.grid_sample(\1, align_corners=True)",
     "grid_sample with align_corners=True, PyTorch < 1.3's behaviour (1.3 changed the default)"),
]
OFFICIAL_FILES = ("SkipNet.py", "NoSkipNet_X2Face.py", "NoSkipNet_X2Face_pose.py", "UnwrappedFace.py")


def load_official(folder: Path, verbose: bool = True) -> types.ModuleType:
    """Import the official ``UnwrappedFace`` module (and the pix2pix files it imports) from ``folder``, adapted in
    memory as ``ADAPTATIONS`` says."""
    counts: dict[str, int] = {}
    for name in OFFICIAL_FILES:
        path = folder / name
        if not path.is_file():
            raise SystemExit(f"error: {path} not found; --official takes a clone of github.com/oawiles/X2Face "
                             f"(or its UnwrapMosaic folder)")
        src = path.read_text()
        for pattern, regex, repl, why in ADAPTATIONS:
            if pattern not in ("*", name):
                continue
            if regex is None:
                n = src.count("\t")
                src = src.expandtabs(8)
            else:
                src, n = re.subn(regex, repl, src)
            counts[f"{name}: {why}"] = n
        module = types.ModuleType(name[:-3])
        module.__file__ = str(path)
        sys.modules[module.__name__] = module
        exec(compile(src, str(path), "exec"), module.__dict__)
    if verbose:
        print("official code adapted to PyTorch", __import__("torch").__version__, "(in memory):")
        for what, n in counts.items():
            if n:
                print(f"  {what} [{n}x]")
    return sys.modules["UnwrappedFace"]


def randomize(model, seed: int) -> None:
    """Random weights: keep the official init of the convolutions, draw batch-norm affine parameters and running
    statistics (so that eval mode exercises them)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", required=True, help="a clone of github.com/oawiles/X2Face (or its UnwrapMosaic)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tolerance", type=float, default=1e-4, help="exit status 1 when a difference exceeds it")
    args = p.parse_args(argv)

    import torch

    folder = Path(args.official)
    folder = folder / "UnwrapMosaic" if (folder / "UnwrapMosaic").is_dir() else folder
    official_mod = load_official(folder)
    torch.manual_seed(args.seed)
    official = official_mod.UnwrappedFaceWeightedAverage(output_num_channels=2, input_num_channels=3, inner_nc=128)
    randomize(official, args.seed)
    optimizer = torch.optim.SGD(official.parameters(), lr=1e-3, momentum=0.9)  # train_model.py's checkpoint format

    from lightning_modules.factory import build_module
    from networks.x2face import ours_to_official
    from tasks.config import compose_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x2face_model.pth"
        state = {k: v for k, v in official.state_dict().items() if not k.endswith("num_batches_tracked")}
        torch.save({"state_dict": state, "optimizer": optimizer.state_dict()}, path)
        cfg = compose_config(["model=x2face", "size=paper", f"model.official_weights={path}"])
        ours = build_module(cfg).net
    official.to(args.device)
    ours.to(args.device)
    size = 2 ** ours.embedding.depth
    g = torch.Generator().manual_seed(args.seed + 1)
    driving = torch.rand(args.batch, 3, size, size, generator=g).to(args.device)
    sources = [torch.rand(args.batch, 3, size, size, generator=g).to(args.device) for _ in range(3)]
    vector = torch.randn(args.batch, ours.driving.widths[-1], generator=g).to(args.device)

    innermost = official.pix2pixSampler.netG.model
    while innermost.submodule is not None:
        innermost = innermost.submodule
    captured: dict[str, torch.Tensor] = {}

    def capture(_m, _inp, out):
        captured["v"] = out.detach().clone()

    def replace(_m, _inp, out):
        return vector[:, :, None, None].clone()

    rows: list[tuple[str, float]] = []

    def compare(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
        assert a.shape == b.shape, (name, a.shape, b.shape)
        rows.append((name, float((a - b).abs().max())))

    with torch.no_grad():
        for mode in ("eval", "train"):
            official.train(mode == "train")
            ours.train(mode == "train")
            if mode == "eval":
                compare("embedding net output (flow + confidence) [eval]",
                        official.pix2pixUnwrapped(sources[0].clone())[0], ours.embedding(sources[0])[0])
                handle = innermost.down[1].register_forward_hook(capture)
                off_drv = official.pix2pixSampler(driving.clone())[0]
                handle.remove()
                compare("driving net output (2-channel flow) [eval]", off_drv, ours.driving(driving)[0])
                compare("driving vector (innermost conv output) [eval]", captured["v"].flatten(1),
                        ours.driving.driving_vector(driving))
            for k in (1, 3):
                srcs = sources[:k]
                compare(f"generated frame, {k} source{'s' * (k > 1)} [{mode}]",
                        official(driving.clone(), *[s.clone() for s in srcs]), ours(driving, srcs))
            if mode == "eval":
                for k in (1, 3):
                    handle = innermost.down[1].register_forward_hook(replace)
                    off = official(driving.clone(), *[s.clone() for s in sources[:k]])
                    handle.remove()
                    given = vector.clone()
                    compare(f"frame from a given driving vector, {k} source{'s' * (k > 1)} [eval]", off,
                            ours.from_vector(given, sources[:k]))
                    compare("  (the given vector afterwards: unchanged)", given, vector)

    # the train-mode passes updated the batch-norm running statistics of both: the same updates?
    theirs, mine = official.state_dict(), ours_to_official(ours.state_dict())
    compare("batch-norm running statistics after the train-mode passes",
            torch.cat([theirs[k].flatten() for k in mine if ".running_" in k]),
            torch.cat([mine[k].flatten() for k in mine if ".running_" in k]))
    worst = max(d for _, d in rows)
    print(f"official {folder} vs ours (networks/x2face.py), paper sizes {size}x{size}, batch {args.batch}, "
          f"{args.device}, float32, weights shared through x2face_model.pth and model.official_weights:")
    for name, d in rows:
        print(f"  {name:<58} max |diff| {d:.2e}")
    print(f"max {worst:.2e} ({'within' if worst <= args.tolerance else 'ABOVE'} tolerance {args.tolerance:g})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    raise SystemExit(main())
