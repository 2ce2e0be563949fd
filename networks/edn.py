"""Everybody Dance Now's own networks (Chan et al., ICCV 2019): the temporal generator (§3.2: a pix2pixHD generator
whose input is the current pose label and the previous generated frame, zeros for the first frame) and the face
residual generator (§3.3: a small generator that adds a residual to the face crop), with the crop helpers.
The frame generators themselves are pix2pixHD's (:mod:`networks.pix2pixhd`), the discriminators are shared.

Docs: docs/papers/edn.md (commands, datasets, official weights, measured figures)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn


class TemporalGenerator(nn.Module):
    """``G(x_t, previous)`` = ``generator(cat([x_t, previous]))``; ``previous`` = zeros for a sequence's first frame.

    ``generator``: a factory ``(input_nc, output_nc) -> nn.Module`` (pix2pixHD's GlobalGenerator or LocalEnhancer),
    built with ``label_nc + output_nc`` input channels.
    """

    def __init__(self, generator: Callable[..., nn.Module], label_nc: int = 3, output_nc: int = 3) -> None:
        super().__init__()
        self.label_nc, self.output_nc = int(label_nc), int(output_nc)
        self.generator = generator(input_nc=self.label_nc + self.output_nc, output_nc=self.output_nc)
        self.total_stride = int(getattr(self.generator, "total_stride", 1))

    def forward(self, label: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        if previous is None:
            previous = label.new_zeros((label.shape[0], self.output_nc, *label.shape[-2:]))
        return self.generator(torch.cat([label, previous], dim=1))

    def sequence(self, labels: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """Frame by frame over ``labels`` [B, T, C, H, W], each frame conditioned on the previous output (the
        first on ``previous``, zeros by default); gradients flow through the whole chain. Returns [B, T, 3, H, W]."""
        frames = []
        for t in range(labels.shape[1]):
            previous = self(labels[:, t], previous)
            frames.append(previous)
        return torch.stack(frames, dim=1)

    def part_modules(self) -> dict[str, list[nn.Module]]:
        if hasattr(self.generator, "part_modules"):
            return self.generator.part_modules()
        return {"global": [self.generator]}


def crop_boxes(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Square crops of ``x`` [B, C, H, W] at ``boxes`` [B, 3] = (top, left, size), one size for the batch."""
    size = int(boxes[0, 2])
    if bool((boxes[:, 2] != size).any()):
        raise ValueError(f"face boxes of one batch must share a size, got {boxes[:, 2].tolist()}")
    return torch.stack([x[i, :, int(top):int(top) + size, int(left):int(left) + size]
                        for i, (top, left, _) in enumerate(boxes)])


def paste_boxes(x: torch.Tensor, crops: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``x`` with ``crops`` written back at ``boxes`` (a new tensor; differentiable w.r.t. both)."""
    rows = []
    for i, (top, left, s) in enumerate(boxes.tolist()):
        pad = (left, x.shape[-1] - left - s, top, x.shape[-2] - top - s)
        mask = torch.nn.functional.pad(torch.ones_like(crops[i, :1]), pad)
        rows.append(x[i] * (1 - mask) + torch.nn.functional.pad(crops[i], pad))
    return torch.stack(rows)


class FaceResidualGenerator(nn.Module):
    """The face GAN's generator (paper §3.3, official ``faceGen``): ``face + G_f(cat([pose crop, face crop]))``.

    ``generator``: a factory ``(input_nc, output_nc) -> nn.Module`` (official: pix2pixHD's global generator, ngf 64),
    built with ``label_nc + 3`` input channels and 3 output channels (the residual, in [-1, 1] from its Tanh).
    """

    def __init__(self, generator: Callable[..., nn.Module], label_nc: int = 3) -> None:
        super().__init__()
        self.generator = generator(input_nc=int(label_nc) + 3, output_nc=3)
        self.total_stride = int(getattr(self.generator, "total_stride", 1))

    def residual(self, label_crop: torch.Tensor, face_crop: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat([label_crop, face_crop], dim=1))

    def forward(self, label_crop: torch.Tensor, face_crop: torch.Tensor) -> torch.Tensor:
        return face_crop + self.residual(label_crop, face_crop)


# ---------------------------------------------------------------------------------------------- official weights
# The official code (carolineec/EverybodyDanceNow, models/pix2pixHD_model_fullts.py) saves one bare state dict per
# network with BaseModel.save_network: ``<epoch>_net_<label>.pth`` in --checkpoints_dir/--name. Its netG and netD
# are pix2pixHD's (its models/networks.py), so their keys go through pix2pixHD's tables; the face D is a single
# NLayerDiscriminator with batch norm whose flat sequential is named ``facemodel``.
OFFICIAL_LABELS = {"G": "the frame generator netG (pix2pixHD global or local G on label + previous frame)",
                   "D": "netD, the official (temporal) multiscale D on (x_t, x_t+1, y_t, y_t+1)",
                   "Gface": "faceGen, the face residual generator (--faceGtype global)",
                   "Dface": "netDface, the face D (NLayerDiscriminator, batch norm)"}


def official_path(folder: str | os.PathLike, label: str, epoch: str = "latest") -> Path:
    """``<folder>/<epoch>_net_<label>.pth`` as the official ``save_network`` names it."""
    return Path(folder) / f"{epoch}_net_{label}.pth"


def generator_official_name(generator: nn.Module) -> Callable[[str], str]:
    """our key of ``generator`` (pix2pixHD's GlobalGenerator or LocalEnhancer) -> its official key (pix2pixHD's
    table: the official EDN netG and faceGen are pix2pixHD's classes)."""
    from networks.pix2pixhd import LocalEnhancer
    from networks.pix2pixhd_official import generator_key

    if isinstance(generator, LocalEnhancer):
        return lambda key: generator_key(key, "local", 0, 0)
    n_down = int(math.log2(int(generator.total_stride)))
    n_blocks = len(generator.body) - (4 + 6 * n_down)  # stem, down/upsamplings (3 modules each), resnet blocks
    return lambda key: generator_key(key, "global", n_down, n_blocks)


def discriminator_official_name(disc: nn.Module, interm_feat: bool) -> Callable[[str], str]:
    """our :class:`MultiscaleDiscriminator` key -> official ``netD`` key (pix2pixHD's table)."""
    from networks.pix2pixhd_official import discriminator_key

    return lambda key: discriminator_key(key, disc.num_D, disc.n_layers, interm_feat)


def face_discriminator_key(key: str, n_layers: int) -> str:
    """our one-scale :class:`MultiscaleDiscriminator` key -> official ``netDface`` key (``facemodel.N``: the flat
    layout of pix2pixHD's table with the prefix ``facemodel`` instead of ``layer0``)."""
    from networks.pix2pixhd_official import discriminator_key

    return "facemodel." + discriminator_key(key, 1, n_layers, False).split(".", 1)[1]


def face_discriminator_official_name(disc: nn.Module) -> Callable[[str], str]:
    """:func:`face_discriminator_key` for ``disc``."""
    return lambda key: face_discriminator_key(key, disc.n_layers)


def _first_conv_inputs(state: Mapping[str, torch.Tensor], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        if key in state and state[key].dim() == 4:
            return int(state[key].shape[1])
    return None


def read_official_file(path: Path, label: str) -> dict[str, torch.Tensor]:
    """The bare state dict of one official file (``module.`` prefixes dropped, missing batch-norm step counters of
    PyTorch < 0.4.1 set to 0); one-line errors naming the file and what it should hold."""
    from networks.official import OfficialWeightsError, strip_data_parallel, with_step_counters
    from networks.weights import read_state_dict

    what = OFFICIAL_LABELS[label]
    if not path.is_file():
        raise FileNotFoundError(f"model.official_weights: {path} not found ({what}); pass the folder where the "
                                f"official train_fullts.py saved it (--checkpoints_dir/--name)")
    state = read_state_dict(path, f"EDN official {label}")
    if "state_dict" in state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OfficialWeightsError(f"model.official_weights: {path} is not an official weights file (the official "
                                   f"save_network writes a bare state dict of tensors), so it cannot be {what}")
    return with_step_counters(strip_data_parallel(state))


def load_official_network(net: nn.Module, state: Mapping[str, torch.Tensor], path: Path, label: str,
                          official_name: Callable[[str], str], expected_inputs: int, fix: str) -> None:
    """Fill ``net`` from ``state``, the official file ``path`` (:func:`read_official_file`), by name; one-line
    errors naming the file, the key and ``fix``."""
    from networks.official import OfficialWeightsError, map_official_state

    what = OFFICIAL_LABELS[label]
    first = _first_conv_inputs(state, ("model.1.weight", "model1_1.1.weight", "scale0_layer0.0.weight",
                                       "layer0.0.weight", "facemodel.0.weight"))
    if first is not None and first != expected_inputs:
        raise OfficialWeightsError(
            f"model.official_weights: {path}: its first convolution takes {first} input channels, {what} takes "
            f"{expected_inputs}: a pix2pixHD file (label map + instance map) or another network's file does not fit; "
            f"EDN's netG takes label + previous frame, netD (x_t, x_t+1, y_t, y_t+1), the face networks (pose crop, "
            f"face crop): check model.label_nc and that the file is the official EDN {path.name}")
    try:
        mapped = map_official_state(net, state, official_name, str(path), what, hint=fix)
    except OfficialWeightsError as exc:
        raise OfficialWeightsError(f"model.official_weights: {exc}") from None
    net.load_state_dict(mapped, strict=True)


def load_official_edn(folder: str | os.PathLike, generator: TemporalGenerator, discriminator: nn.Module | None,
                      face_generator: FaceResidualGenerator | None, face_discriminator: nn.Module | None,
                      epoch: str = "latest") -> list[str]:
    """Load the official files of ``folder`` into the networks given (None = not built in this stage). ``G`` is
    required, and ``Gface`` when the face generator is built; ``D`` and ``Dface`` are loaded when present (the
    official test run needs neither). Returns one line per file loaded or skipped, for the log."""
    import networks.discriminators as discs

    done: list[str] = []
    c = generator.label_nc + generator.output_nc
    path = official_path(folder, "G", epoch)
    load_official_network(
        generator.generator, read_official_file(path, "G"), path, "G", generator_official_name(generator.generator), c,
        "set model.networks.<global|local> (ngf, n_downsampling/n_downsample_global, n_blocks...) and stage.generator "
        "to the official --netG, --ngf, --n_downsample_global, --n_blocks_global, --n_blocks_local it was trained with")
    done.append(f"G -> netG.generator ({type(generator.generator).__name__})")
    if face_generator is not None:
        path = official_path(folder, "Gface", epoch)
        load_official_network(
            face_generator.generator, read_official_file(path, "Gface"), path, "Gface",
            generator_official_name(face_generator.generator), c,
            "the official faceGen (--faceGtype global) is define_G(6, 3, 64, 'global', 3, 5): keep "
            "model.networks.face_generator at ngf 64, n_downsampling 3, n_blocks 5 (--faceGtype unet is not supported)")
        done.append("Gface -> faceG.generator")
    for label, net, build_name, fix in (
        ("D", discriminator, None,
         "set model.networks.temporal_discriminator num_D / n_layers / ndf to the official --num_D / --n_layers_D / "
         "--ndf (the EDN README's local and face stages use --num_D 3)"),
        ("Dface", face_discriminator, face_discriminator_official_name,
         "the official netDface is NLayerDiscriminator(6, ndf=64, n_layers=--n_layers_D, batch norm): keep "
         "model.networks.face_discriminator at ndf 64, num_D 1, norm batch"),
    ):
        path = official_path(folder, label, epoch)
        if net is None:
            if path.is_file():
                done.append(f"{label}: not used in this stage (its network is not built)")
            continue
        if not path.is_file():
            done.append(f"{label}: {path.name} absent, {OFFICIAL_LABELS[label].split(',')[0]} keeps its initial weights")
            continue
        if not isinstance(net, discs.MultiscaleDiscriminator):
            raise TypeError(f"official {label}: expected a MultiscaleDiscriminator, got {type(net).__name__}")
        state = read_official_file(path, label)
        if build_name is None:
            name = discriminator_official_name(net, any(k.startswith("scale") for k in state))  # getIntermFeat
        else:
            name = build_name(net)
        load_official_network(net, state, path, label, name, (2 if label == "D" else 1) * c, fix)
        done.append(f"{label} -> {'netDT (temporal D)' if label == 'D' else 'faceD'}")
    return done
