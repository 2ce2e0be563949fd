"""task=stylize: Linear Style Transfer inference (Li et al., CVPR 2019) on image files.

    python run.py task=stylize model=lst task.ckpt_path=<transform run>/checkpoints/last.ckpt \
        task.content=photos/ task.style=paintings/ task.short_side=512

* ``task.content`` / ``task.style``: an image file or a folder of images (searched recursively) each; every content
  is stylised with every style. Each style's code (``T_s``, style mean) is computed once and reused.
* ``task.alpha`` in [0, 1]: content/style trade-off in feature space, ``alpha * T(c, s) + (1 - alpha) * c``
  (0 = the decoder's reconstruction of the content, 1 = full stylisation).
* ``task.style_weights``: null = each style separately; a list (one weight >= 0 per style image, in the sorted
  order of ``task.style``) = ONE mixed style, interpolated in the transformed feature space (the style codes are
  mixed, which equals mixing the transformed features, see ``LinearStylizer.mix_codes``); its column is ``mix``.
* ``task.short_side``: resize content and style so their shorter side has this many pixels (null = keep sizes).
  Any size works: the stylizer pads to the encoder stride and crops back.
* ``task.photoreal``: post-filter each output with an edge-preserving guided filter guided by the content
  (``task.guided_filter.radius`` / ``eps``; see ``tasks/lst/photoreal.py``). The paper's learned spatial
  propagation network is NOT included; the guided filter is a training-free stand-in. The paper uses r31 for
  photo-realistic transfer (``model.level=r31`` with an r31 checkpoint).

Writes ``<paths.prediction_dir>/<content stem>_x_<style stem>.png`` (``..._x_mix.png`` when mixing) and
``grid.png``: rows = contents, columns = styles, the inputs in the first row and column (cells of
``task.grid_cell`` pixels, aspect kept). Returns ``{"outputs": [...], "grid": path | None, ...}``.

The checkpoint must be an LST checkpoint of stage ``transform`` (the ``decoder`` stage leaves the transformation
untrained); its level and sizes come from the checkpoint itself. The helpers here (:func:`load_stylizer`,
:func:`read_image`, :func:`gather_images`, :func:`check_alpha`) are shared by ``stylize_video`` and ``export``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import make_grid

from datamodules.image_grids import save_grid
from datamodules.lst.datamodule import FolderImages, list_images
from datamodules.transforms import check_pixels, probe_image, verify_image
from lightning_modules.checkpoints import read_record
from lightning_modules.loading import build_from_record
from lightning_modules.stages import StageError
from networks.lst import LEVEL_STRIDE, LinearStylizer, StyleCode
from tasks.config import ConfigError
from tasks.inference import inference_device, progress, require_checkpoint
from tasks.lst.photoreal import SPN_NOTE, check_guided_filter_args, guided_filter

log = logging.getLogger(__name__)

MIX_NAME = "mix"


# ------------------------------------------------------------------------------------------- arguments
def task_value(cfg: DictConfig, key: str, hint: str) -> Any:
    """``cfg.task.<key>``, or a ConfigError saying how to set it when it is missing (``???``) or null."""
    if key not in cfg.task or OmegaConf.is_missing(cfg.task, key) or cfg.task[key] is None:
        raise ConfigError(f"task={cfg.task.name} needs task.{key}=<{hint}>")
    value = cfg.task[key]
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_alpha(alpha: Any) -> float:
    """``task.alpha`` as a float in [0, 1], or a ValueError naming the key."""
    try:
        value = float(alpha)
    except (TypeError, ValueError) as err:
        raise ValueError(f"task.alpha={alpha!r} must be a number in [0, 1]") from err
    if isinstance(alpha, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"task.alpha={alpha} must be in [0, 1] (1 = full style, 0 = the content's reconstruction)")
    return value


def check_short_side(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"task.short_side={value!r} must be a positive integer (pixels) or null (keep sizes)")
    return value


def photoreal_args(cfg: DictConfig) -> tuple[int, float] | None:
    """(radius, eps) when ``task.photoreal`` is on, else None."""
    if not bool(cfg.task.get("photoreal", False)):
        return None
    gf = cfg.task.get("guided_filter") or {}
    return check_guided_filter_args(gf.get("radius", 8), gf.get("eps", 1e-2))


def parse_style_weights(value: Any, n_styles: int) -> list[float] | None:
    """``task.style_weights``: null, or one number >= 0 per style image with a positive sum."""
    if value is None:
        return None
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"task.style_weights={value!r} must be null or a list of numbers, one per style image")
    try:
        weights = [float(w) for w in value]
    except (TypeError, ValueError) as err:
        raise ValueError(f"task.style_weights={value!r} must be a list of numbers") from err
    if len(weights) != n_styles:
        raise ValueError(
            f"task.style_weights has {len(weights)} weights but task.style holds {n_styles} style image(s); give "
            f"one weight per style image (in sorted file order)"
        )
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"task.style_weights={weights} must be >= 0 with a positive sum (they are normalised)")
    return weights


# ------------------------------------------------------------------------------------------- images
def gather_images(path: Any, key: str) -> list[str]:
    """``[path]`` for a file, the images of a folder (recursive, sorted), or an error naming ``key`` and the path."""
    if path is None or str(path) == "":
        raise ConfigError(f"{key} is not set: pass {key}=<an image file or a folder of images>")
    path = os.fspath(str(path))
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        return list_images(path, key)
    raise FileNotFoundError(f"{key}={path} does not exist; pass an image file or a folder of images")


def min_image_side(level: str) -> int:
    """Smallest side the encoder/decoder pair handles: the deepest feature map needs 2 pixels for its padding."""
    return 2 * LEVEL_STRIDE[level]


def working_side(size: tuple[int, int], short_side: int | None, working_size: int | None) -> int | None:
    """The shorter side an input of ``size`` (H, W) is resized to: ``short_side`` when set (up or down), else
    ``working_size`` when the input's shorter side is larger (inputs are only shrunk to it), else None (as it is)."""
    if short_side is not None:
        return short_side
    if working_size is not None and min(size) > working_size:
        return working_size
    return None


def read_image(path: str, short_side: int | None = None, min_side: int = 1, working_size: int | None = None,
               max_pixels: int | None = None) -> torch.Tensor:
    """RGB image file -> [1, 3, H, W] float in [0, 1], shorter side resized to ``short_side`` (bicubic) when set, or
    shrunk to ``working_size`` when it is larger (:func:`working_side`; JPEGs are decoded at the reduced scale).
    Unreadable files, and files above ``max_pixels`` (``task.max_pixels``), raise a ValueError naming the file."""
    load_size = short_side
    if working_size is not None and short_side is None:
        h, w = probe_image(path)
        check_pixels(path, w, h, max_pixels)
        load_size = working_side((h, w), None, working_size)
        if load_size is not None:
            log.info("%s is %dx%d: shrunk to a shorter side of %d (task.working_size; null keeps the full size)",
                     path, w, h, load_size)
    img = FolderImages([path], "image", max_pixels=max_pixels).image(0, load_size)
    h, w = img.shape[-2:]
    if min(h, w) < min_side:
        raise ValueError(
            f"image {path} is {h}x{w}; the model needs at least {min_side} pixels on each side: set "
            f"task.short_side={min_side} or larger"
        )
    return img.unsqueeze(0)


def check_working_size(cfg: DictConfig) -> tuple[int | None, int | None]:
    """(``task.working_size``, ``task.max_pixels``): each a positive int or null, else a ValueError naming it."""
    out = []
    for key in ("working_size", "max_pixels"):
        value = cfg.task.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"task.{key}={value!r} must be a positive integer or null")
        out.append(value)
    return out[0], out[1]


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(str(path)))[0]


# ------------------------------------------------------------------------------------------- model
def load_stylizer(cfg: DictConfig, device: torch.device | str | None = None) -> LinearStylizer:
    """The :class:`LinearStylizer` (encoder + transform + decoder) of ``task.ckpt_path``, in eval mode, built by the
    checkpoint loader from the checkpoint's own config (its level and sizes).

    Clear errors for: a checkpoint of another model (e.g. pix2pixHD) and a ``decoder``-stage checkpoint
    (untrained transformation)."""
    task = cfg.task.name
    task_value(cfg, "ckpt_path", "path to an LST checkpoint of stage transform")
    ckpt_path = require_checkpoint(cfg)
    record = read_record(ckpt_path)
    record.require_model("lst", f"task={task} needs the checkpoint of an LST run of stage transform (python run.py "
                                f"model=lst stage=transform ...)", title="Linear Style Transfer")
    if record.stage == "decoder":
        raise StageError(
            f"task.ckpt_path={ckpt_path} comes from stage 'decoder': its linear transformation is untrained. Train "
            f"it first (python run.py model=lst stage=transform stage.init_from={ckpt_path}) and pass that checkpoint"
        )
    stylizer = build_from_record(record).stylizer().eval().requires_grad_(False)
    if device is not None:
        stylizer = stylizer.to(device)
    return stylizer


# ------------------------------------------------------------------------------------------- stylization
@torch.inference_mode()
def style_codes(stylizer: LinearStylizer, styles: Sequence[torch.Tensor],
                weights: Sequence[float] | None = None) -> list[StyleCode]:
    """One code per style image, or one mixed code when ``weights`` are given."""
    codes = [stylizer.style_code(s) for s in styles]
    if weights is None:
        return codes
    return [LinearStylizer.mix_codes(codes, weights)]


@torch.inference_mode()
def stylize_one(stylizer: LinearStylizer, content: torch.Tensor, code: StyleCode, alpha: float = 1.0,
                photoreal: tuple[int, float] | None = None) -> torch.Tensor:
    """[B, 3, H, W] content in [0, 1] -> stylised [B, 3, H, W] in [0, 1] (guided-filtered when ``photoreal``)."""
    out = stylizer.stylize_with_code(content, code[0], code[1], alpha)
    if photoreal is not None:
        out = guided_filter(out, content, *photoreal)
    return out


# ------------------------------------------------------------------------------------------- grid
def fit_box(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[3, H, W] -> [3, height, width]: resized to fit (aspect kept), centred on white."""
    img = img.detach().float().cpu().clamp(0, 1)
    h, w = img.shape[-2:]
    s = min(height / h, width / w)
    nh, nw = max(1, min(height, round(h * s))), max(1, min(width, round(w * s)))
    if (nh, nw) != (h, w):
        img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    out = torch.ones(3, height, width)
    top, left = (height - nh) // 2, (width - nw) // 2
    out[:, top : top + nh, left : left + nw] = img.clamp(0, 1)
    return out


def style_header(styles: Sequence[torch.Tensor], cell: int) -> torch.Tensor:
    """One cell showing the style images side by side (one image: the image itself)."""
    n = len(styles)
    widths = [cell // n + (1 if i < cell % n else 0) for i in range(n)]
    return torch.cat([fit_box(s[0] if s.dim() == 4 else s, cell, w) for s, w in zip(styles, widths, strict=True)],
                     dim=-1)


def content_style_grid(contents: Sequence[torch.Tensor], headers: Sequence[torch.Tensor],
                       outputs: Sequence[Sequence[torch.Tensor]], cell: int, padding: int = 2) -> torch.Tensor:
    """Rows = contents, columns = styles; first row = the style headers, first column = the contents; every cell
    ``cell`` x ``cell`` pixels with ``padding`` white pixels between. Size: ``(len(contents) + 1) * (cell +
    padding) + padding`` by ``(len(headers) + 1) * (cell + padding) + padding``."""
    cols = len(headers) + 1
    cells = [torch.ones(3, cell, cell)] + [fit_box(h, cell, cell) for h in headers]
    for content, row in zip(contents, outputs, strict=True):
        if len(row) != len(headers):
            raise ValueError(f"grid row has {len(row)} outputs for {len(headers)} styles")
        cells.append(fit_box(content[0] if content.dim() == 4 else content, cell, cell))
        cells.extend(fit_box(o[0] if o.dim() == 4 else o, cell, cell) for o in row)
    return make_grid(torch.stack(cells), nrow=cols, padding=padding, pad_value=1.0)


# ------------------------------------------------------------------------------------------- task
def stylize(cfg: DictConfig) -> dict[str, Any]:
    """Stylise every content with every style (or the mixed style); write the outputs and ``grid.png``."""
    content_files = gather_images(task_value(cfg, "content", "an image file or folder"), "task.content")
    style_files = gather_images(task_value(cfg, "style", "an image file or folder"), "task.style")
    alpha = check_alpha(cfg.task.get("alpha", 1.0))
    short_side = check_short_side(cfg.task.get("short_side"))
    working_size, max_pixels = check_working_size(cfg)
    weights = parse_style_weights(cfg.task.get("style_weights"), len(style_files))
    photoreal = photoreal_args(cfg)
    make_grid_png = bool(cfg.task.get("grid", True))
    cell = int(cfg.task.get("grid_cell", 256))
    if cell < 8:
        raise ValueError(f"task.grid_cell={cell} must be >= 8 pixels")
    out_dir = str(cfg.paths.prediction_dir)
    min_side = min_image_side(str(cfg.model.get("level", "r41")))

    # check every input before the model loads, so a bad file stops the run at once (styles are decoded, the
    # contents' headers parsed; a content is decoded when its turn comes)
    styles = [read_image(p, short_side, min_side, working_size, max_pixels) for p in style_files]
    for p in content_files:
        verify_image(p)
        h, w = probe_image(p)
        check_pixels(p, w, h, max_pixels)
    style_names = [MIX_NAME] if weights is not None else [stem(p) for p in style_files]
    names = [f"{stem(c)}_x_{s}.png" for c in content_files for s in style_names]
    duplicates = sorted(n for n, k in Counter(names).items() if k > 1)
    if duplicates:
        raise ValueError(f"several inputs map to the output name(s) {duplicates[:5]}; rename the files")
    if photoreal is not None:
        log.info("%s (radius %d, eps %g)", SPN_NOTE, *photoreal)
        if str(cfg.model.get("level")) != "r31":
            log.info("photo-realistic mode: the paper uses the r31 model (model.level=r31), fewer distortions")

    device = inference_device(cfg)
    stylizer = load_stylizer(cfg, device)
    codes = style_codes(stylizer, [s.to(device) for s in styles], weights)
    headers = [style_header(styles, cell)] if weights is not None else [s[0] for s in styles]

    written: list[str] = []
    grid_contents: list[torch.Tensor] = []
    grid_rows: list[list[torch.Tensor]] = []
    for path in progress(content_files, "stylize", unit="content"):
        content = read_image(path, short_side, min_side, working_size, max_pixels).to(device)
        row = []
        for name, code in zip(style_names, codes, strict=True):
            out = stylize_one(stylizer, content, code, alpha, photoreal).cpu()
            written.append(save_grid(out[0], os.path.join(out_dir, f"{stem(path)}_x_{name}.png")))
            if make_grid_png:
                row.append(fit_box(out[0], cell, cell))
        if make_grid_png:
            grid_contents.append(fit_box(content[0].cpu(), cell, cell))
            grid_rows.append(row)
    grid_path = None
    if make_grid_png:
        grid_path = save_grid(content_style_grid(grid_contents, headers, grid_rows, cell),
                              os.path.join(out_dir, "grid.png"))
    mode = f"mix of {len(style_files)} styles {weights}" if weights is not None else f"{len(style_files)} style(s)"
    print(f"\ncondsynth: {len(written)} stylised images ({len(content_files)} content(s) x {mode}, alpha={alpha}"
          f"{', photoreal' if photoreal else ''}) written to {out_dir}" + (f"; grid {grid_path}" if grid_path else ""))
    return {"outputs": written, "grid": grid_path, "contents": content_files, "styles": style_files,
            "alpha": alpha, "style_weights": weights, "photoreal": photoreal is not None}
