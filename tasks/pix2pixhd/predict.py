"""task=predict: label maps (``dataset.predict_label_dir``, optional ``dataset.predict_inst_dir``) -> one PNG per
input under ``paths.prediction_dir``, named after the input file's stem.

pix2pixHD features (§3.4) come from the checkpoint's per-class K-means centres (``task=cluster_features``):
``feature_mode=random`` draws a centre per instance (seeded by ``task.feature_seed``), ``cluster`` takes centre
``task.cluster_index`` (an int, or ``{class_id: index}``) for every instance of a class, ``zeros`` uses none.
Images are written at each label map's own size (``task.output_size=label``, the default: the generated image is
resized back, bilinear with antialiasing) or at the size the model generates (``task.output_size=model``:
``dataset.image_size`` x ``stage.resolution_scale``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from datamodules.image_grids import save_grid, to_unit_range
from lightning_modules.checkpoints import read_record
from tasks.builders import build_datamodule
from tasks.inference import inference_device, load_for_inference, progress, require_checkpoint, to_device

log = logging.getLogger(__name__)

#: the inference task of each other model, named when its checkpoint is given to task=predict
OTHER_MODEL_TASKS = {"lst": "task=stylize task.content=<image> task.style=<image>",
                     "edn": "task=transfer task.source=<video>", "x2face": "task=reenact task.source=<image> "
                     "task.driving=<video>"}

PREDICT_FEATURE_MODES = ("random", "cluster", "zeros")


def parse_cluster_index(value: Any) -> int | dict[int, int] | None:
    """``task.cluster_index``: null, an int, or a mapping class id -> centre index (keys may be strings)."""
    if value is None:
        return None
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, bool):
        raise ValueError(f"task.cluster_index={value!r} must be an int or a {{class_id: index}} mapping")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"task.cluster_index={value} must be >= 0")
        return value
    if isinstance(value, Mapping):
        try:
            out = {int(k): int(v) for k, v in value.items()}
        except (TypeError, ValueError) as err:
            raise ValueError(f"task.cluster_index={value!r} must map class ids to centre indices (ints)") from err
        if any(v < 0 for v in out.values()):
            raise ValueError(f"task.cluster_index={value!r}: centre indices must be >= 0")
        return out
    raise ValueError(f"task.cluster_index={value!r} must be an int or a {{class_id: index}} mapping")


def at_label_size(image: torch.Tensor, label_path: str) -> torch.Tensor:
    """``image`` [3, h, w] resized (bilinear, antialiased) to the size of the label map it was generated from."""
    with Image.open(label_path) as label:
        width, height = label.size
    if tuple(image.shape[-2:]) == (height, width):
        return image
    return F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False,
                         antialias=True)[0].clamp(0, 1)


def output_name(path: str) -> str:
    return os.path.splitext(os.path.basename(str(path)))[0] + ".png"


def predict(cfg: DictConfig) -> list[str]:
    """Generate one PNG per label map; returns the written paths (in input order)."""
    ckpt_path = require_checkpoint(cfg)
    record = read_record(ckpt_path)  # the checkpoint's model first: a label folder cannot help another model
    other = OTHER_MODEL_TASKS.get(str(record.model))
    record.require_model("pix2pixhd", f"task=predict turns label maps into photos with pix2pixHD; for this "
                                      f"checkpoint use {other or 'its own inference task (python run.py --help)'}",
                         title="pix2pixHD")
    if not cfg.dataset.get("predict_label_dir"):
        raise ValueError(
            "task=predict needs label maps: set dataset.predict_label_dir=<folder of label-id PNGs> "
            "(and dataset.predict_inst_dir=<folder of instance maps> when the model uses instances)"
        )
    feature_mode = str(cfg.task.get("feature_mode", "random"))
    if feature_mode not in PREDICT_FEATURE_MODES:
        raise ValueError(
            f"task.feature_mode={feature_mode} is not available for predict (no real photos to encode); "
            f"use one of {PREDICT_FEATURE_MODES}"
        )
    cluster_index = parse_cluster_index(cfg.task.get("cluster_index"))
    if cluster_index is not None and feature_mode != "cluster":
        log.warning("task.cluster_index is only used with feature_mode=cluster (feature_mode=%s)", feature_mode)
    output_size = str(cfg.task.get("output_size", "label"))
    if output_size not in ("label", "model"):
        raise ValueError(f"task.output_size={output_size} is unknown; use label (each label map's size) or model")
    out_dir = str(cfg.paths.prediction_dir)
    device = inference_device(cfg)

    datamodule = build_datamodule(cfg)
    datamodule.setup("predict")  # checks the label / instance files before the model is loaded
    loader = datamodule.predict_dataloader()
    module = load_for_inference(cfg, ckpt_path).to(device)
    generator = torch.Generator().manual_seed(int(cfg.task.get("feature_seed", 0)))

    written: list[str] = []
    seen: set[str] = set()
    with torch.inference_mode():  # no autograd bookkeeping at all (docs/speed-and-precision.md)
        for batch in progress(loader, "predict", unit="batch"):
            batch = to_device(batch, device)
            fake = to_unit_range(module.generate(batch, feature_mode, cluster_index, generator)).cpu()
            for img, src in zip(fake, batch["path"], strict=True):
                if output_size == "label":
                    img = at_label_size(img, src)
                name = output_name(src)
                if name in seen:
                    raise ValueError(f"two inputs map to the output name {name}; rename one of them ({src})")
                seen.add(name)
                written.append(save_grid(img, os.path.join(out_dir, name)))
    size_note = ("at the label maps' sizes" if output_size == "label"
                 else f"at the generated size {'x'.join(map(str, fake.shape[-2:]))}" if written else "")
    print(f"\ncondsynth: {len(written)} predictions (feature_mode={feature_mode}) written to {out_dir} {size_note}")
    return written
