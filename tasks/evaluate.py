"""task=test: metrics of a checkpoint on the dataset's test split.

PSNR and SSIM always (torchmetrics, on [0, 1] images, data_range 1). LPIPS and FID need pretrained networks
that this code never downloads: LPIPS needs torchvision's ImageNet backbone weights in
``torch.hub.get_dir()/checkpoints`` and FID needs the ``torch-fidelity`` package and its Inception weights
(same folder, or ``task.fid_weights``). Their presence is checked *before* a metric is built; when missing the
metric is reported as ``skipped: <reason>`` in the table, in ``metrics.json`` and as a log warning.

Writes ``<run dir>/metrics.md`` (markdown table), ``<run dir>/metrics.json``, sample grids
(label | generated | real) under ``<run dir>/test_samples/``, logs ``test/<metric>`` to the configured loggers
and returns ``{metric: value}`` for the metrics that were computed.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

import hydra
import torch
from omegaconf import DictConfig

from datamodules.atomic_writes import atomic_write_text
from datamodules.image_grids import image_grid, save_grid
from tasks.builders import build_datamodule, build_trainer
from tasks.inference import inference_device, load_for_inference, progress, require_checkpoint, to_device
from tasks.run_logs import build_loggers

log = logging.getLogger(__name__)

KNOWN_METRICS = ("psnr", "ssim", "lpips", "fid")
# torchmetrics' LPIPS backbones -> the torchvision weights enum it loads (weights=<enum>.DEFAULT)
LPIPS_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}
# torch-fidelity's Inception weights (torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3)
FID_INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


# ------------------------------------------------------------------------------------------ availability
def _hub_checkpoint(url: str) -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def lpips_unavailable(net_type: str = "alex") -> str | None:
    """Why torchmetrics' LPIPS cannot be built offline, or None when everything it loads is on disk."""
    if net_type not in LPIPS_BACKBONES:
        return f"unknown LPIPS backbone {net_type!r} (use one of {sorted(LPIPS_BACKBONES)})"
    import torchvision

    url = getattr(torchvision.models, LPIPS_BACKBONES[net_type]).DEFAULT.url
    weights = _hub_checkpoint(url)
    if not os.path.isfile(weights):
        return f"no {net_type} backbone weights at {weights} (offline; copy {os.path.basename(weights)} there)"
    spec = importlib.util.find_spec("torchmetrics.functional.image.lpips")
    if spec is None or spec.origin is None:
        return "torchmetrics has no LPIPS implementation"
    linear = os.path.join(os.path.dirname(spec.origin), "lpips_models", f"{net_type}.pth")
    if not os.path.isfile(linear):
        return f"torchmetrics' LPIPS linear layers {linear} are missing"
    return None


def fid_unavailable(weights_path: str | None = None) -> str | None:
    """Why FID cannot be built offline, or None when torch-fidelity and its Inception weights are present."""
    if importlib.util.find_spec("torch_fidelity") is None:
        return "torch-fidelity is not installed (pip install torch-fidelity)"
    if weights_path:
        return None if os.path.isfile(weights_path) else f"task.fid_weights={weights_path} does not exist"
    weights = _hub_checkpoint(FID_INCEPTION_URL)
    if not os.path.isfile(weights):
        return f"no Inception weights at {weights} (offline; copy {os.path.basename(weights)} there)"
    return None


# ---------------------------------------------------------------------------------------------- metrics
def build_metrics(cfg: DictConfig, device: torch.device) -> tuple[dict[str, Any], dict[str, str]]:
    """Construct the requested metrics that can run offline; returns (metrics, {skipped name: reason})."""
    requested = [str(m).lower() for m in (cfg.task.get("metrics") or [])]
    unknown = [m for m in requested if m not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"task.metrics has unknown metrics {unknown}; use some of {list(KNOWN_METRICS)}")
    metrics: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    net_type = str(cfg.task.get("lpips_net", "alex"))
    fid_weights = cfg.task.get("fid_weights")
    checks: dict[str, Callable[[], str | None]] = {
        "psnr": lambda: None,
        "ssim": lambda: None,
        "lpips": lambda: lpips_unavailable(net_type),
        "fid": lambda: fid_unavailable(fid_weights),
    }
    for name in dict.fromkeys(requested):
        reason = checks[name]()
        if reason is None:
            try:
                metrics[name] = _make_metric(name, net_type, fid_weights).to(device)
            except Exception as err:  # noqa: BLE001 - a metric that cannot be built is reported, not fatal
                reason = f"could not be built: {type(err).__name__}: {err}"
        if reason is not None:
            skipped[name] = reason
            log.warning("metric %s skipped: %s", name, reason)
    return metrics, skipped


def _make_metric(name: str, net_type: str, fid_weights: str | None) -> Any:
    if name == "psnr":
        from torchmetrics.image import PeakSignalNoiseRatio

        return PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))  # mean of per-image PSNR
    if name == "ssim":
        from torchmetrics.image import StructuralSimilarityIndexMeasure

        return StructuralSimilarityIndexMeasure(data_range=1.0)
    if name == "lpips":
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(net_type=net_type, normalize=True)  # inputs in [0, 1]
    from torchmetrics.image.fid import FrechetInceptionDistance

    kwargs = {"feature_extractor_weights_path": fid_weights} if fid_weights else {}
    return FrechetInceptionDistance(feature=2048, normalize=True, **kwargs)


def _update(name: str, metric: Any, fake: torch.Tensor, real: torch.Tensor) -> None:
    if name == "fid":
        metric.update(real, real=True)
        metric.update(fake, real=False)
    else:
        metric.update(fake, real)


# ------------------------------------------------------------------------------------------------ output
def metrics_table(values: Mapping[str, float], skipped: Mapping[str, str], order: list[str]) -> str:
    lines = ["| metric | value |", "| --- | --- |"]
    for name in order:
        if name in values:
            lines.append(f"| {name} | {values[name]:.4f} |")
        elif name in skipped:
            lines.append(f"| {name} | skipped: {skipped[name].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _log_to_loggers(cfg: DictConfig, values: Mapping[str, float]) -> None:
    loggers = build_loggers(cfg)
    for lg in loggers:
        if values:
            lg.log_metrics({f"test/{k}": v for k, v in values.items()}, step=0)
        if hasattr(lg, "finalize"):
            lg.finalize("success")


class _GridWriter:
    """Collect the module's sample rows (``sample_images``, with the evaluated output as ``generated``) over batches;
    write grids of ``per_grid`` samples."""

    def __init__(self, folder: str, per_grid: int = 4, max_grids: int = 2):
        self.folder = folder
        self.per_grid, self.max_grids = per_grid, max_grids
        self.rows: dict[str, list[torch.Tensor]] = {}
        self.written: list[str] = []

    @property
    def wants_more(self) -> bool:
        return len(self.written) < self.max_grids

    def add(self, rows: Mapping[str, torch.Tensor]) -> None:
        if not self.wants_more:
            return
        have = sum(t.shape[0] for t in next(iter(self.rows.values()), []))
        take = self.per_grid - have
        for name, images in rows.items():
            self.rows.setdefault(name, []).append(images[:take].cpu())
        if have + min(take, next(iter(rows.values())).shape[0]) >= self.per_grid:
            self.flush()

    def flush(self) -> None:
        if not self.rows or not self.wants_more:
            return
        grid = image_grid({k: torch.cat(v) for k, v in self.rows.items()}, self.per_grid)
        self.written.append(save_grid(grid, os.path.join(self.folder, f"grid_{len(self.written):03d}.png")))
        self.rows = {}


# -------------------------------------------------------------------------------------------------- task
def test(cfg: DictConfig) -> dict[str, float]:
    """Evaluate ``task.ckpt_path`` on the test split; returns the computed metrics (skipped ones are absent).

    A model whose outputs have a pixel-aligned ground truth (``module.paired_outputs``, e.g. pix2pixHD) gets the
    image metrics above, on ``module.generate(batch, **task.generate)`` against ``module.target_images(batch)``;
    any other model is scored by its own ``test_step`` (see :func:`test_with_module_metrics`).
    """
    ckpt_path = require_checkpoint(cfg)
    # a model scored by its own test_step computes its losses there (e.g. LST's VGG terms): it keeps its loss
    # networks; paired outputs need the generator only
    paired = bool(getattr(hydra.utils.get_class(str(cfg.model._target_)), "paired_outputs", False))
    module = load_for_inference(cfg, ckpt_path, training_networks=not paired)
    if not module.paired_outputs:
        return test_with_module_metrics(cfg, ckpt_path, module)
    device = inference_device(cfg)
    options = dict(cfg.task.get("generate") or {})
    datamodule = build_datamodule(cfg)
    metrics, skipped = build_metrics(cfg, device)
    module = module.to(device)
    datamodule.setup("test")
    loader = datamodule.test_dataloader()
    # the model's own metrics (model.test_metrics: a factory (cfg, module) -> object with update(batch, fake, real)
    # on [0, 1] images and compute() -> (values, skipped)), e.g. a pose distance
    extra = None
    if cfg.model.get("test_metrics") is not None:
        extra = hydra.utils.instantiate(cfg.model.test_metrics)(cfg, module)
    grids = _GridWriter(os.path.join(cfg.paths.run_dir, "test_samples"),
                        max_grids=int(cfg.task.get("num_sample_grids", 2)))
    n_images = 0
    with torch.no_grad():
        for batch in progress(loader, "test", unit="batch"):
            batch = to_device(batch, device)
            real = module.to_unit_images(module.target_images(batch))
            fake = module.to_unit_images(module.generate(batch, **options))
            for name, metric in metrics.items():
                _update(name, metric, fake, real)
            if extra is not None:
                extra.update(batch, fake, real)
            if grids.wants_more:
                grids.add({**module.sample_images(batch), "generated": fake, "real": real})
            n_images += real.shape[0]
    grids.flush()
    if n_images == 0:
        raise ValueError("the test split is empty; check dataset.num_test / the dataset's test folders")
    if "fid" in metrics and n_images < 2:
        skipped["fid"] = f"needs at least 2 test images, got {n_images}"
        log.warning("metric fid skipped: %s", skipped["fid"])
        del metrics["fid"]

    values = {name: float(metric.compute()) for name, metric in metrics.items()}
    if extra is not None:
        extra_values, extra_skipped = extra.compute()
        values.update(extra_values)
        skipped.update(extra_skipped)
    for name, v in values.items():
        if not math.isfinite(v):
            log.warning("metric %s is not finite (%s)", name, v)
    order = [str(m).lower() for m in dict.fromkeys(cfg.task.get("metrics") or [])]
    order += [k for k in [*values, *skipped] if k not in order]
    table = metrics_table(values, skipped, order)
    run_dir = str(cfg.paths.run_dir)
    shown = ", ".join(f"{k}={v}" for k, v in options.items()) or "the model's defaults"
    md = (f"# Test metrics\n\ncheckpoint: `{ckpt_path}`  \nmodel: {cfg.model.name} / stage {cfg.stage.name}, "
          f"dataset: {cfg.dataset.name}, {n_images} test images, generate options: {shown}\n\n{table}")
    atomic_write_text(os.path.join(run_dir, "metrics.md"), md)
    report = {
        "metrics": values,
        "skipped": skipped,
        "num_images": n_images,
        "checkpoint": ckpt_path,
        "generate": options,
        "model": cfg.model.name,
        "stage": cfg.stage.name,
        "dataset": cfg.dataset.name,
    }
    atomic_write_text(os.path.join(run_dir, "metrics.json"), json.dumps(report, indent=2) + "\n")
    _log_to_loggers(cfg, values)
    print(f"\ncondsynth: test metrics of {ckpt_path} ({n_images} images, generate options: {shown})")
    print(table)
    print(f"  written: {os.path.join(run_dir, 'metrics.md')}, metrics.json, {len(grids.written)} grids in "
          f"{os.path.join(run_dir, 'test_samples')}")
    return values


def test_with_module_metrics(cfg: DictConfig, ckpt_path: str, module: Any) -> dict[str, float]:
    """Run the module's ``test_step`` over the test split with a Lightning trainer (LST: reconstruction MSE and
    PSNR for stage decoder, style and content losses for stage transform) and write ``metrics.json``/``.md``."""
    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg, callbacks=[], loggers=build_loggers(cfg))
    results = trainer.test(module, datamodule=datamodule, verbose=False)
    values = {k.removeprefix("test/"): float(v) for k, v in (results[0] if results else {}).items()}
    if not values:
        raise ValueError("the test split is empty; check dataset.num_test / the dataset's test folders")
    table = metrics_table(values, {}, sorted(values))
    run_dir = str(cfg.paths.run_dir)
    if trainer.is_global_zero:
        atomic_write_text(os.path.join(run_dir, "metrics.md"),
                      f"# Test metrics\n\ncheckpoint: `{ckpt_path}`  \nmodel: {cfg.model.name} / stage "
                      f"{cfg.stage.name}, dataset: {cfg.dataset.name}\n\n{table}")
        report = {"metrics": values, "checkpoint": ckpt_path, "model": cfg.model.name, "stage": cfg.stage.name,
                  "dataset": cfg.dataset.name}
        atomic_write_text(os.path.join(run_dir, "metrics.json"), json.dumps(report, indent=2) + "\n")
        print(f"\ncondsynth: test metrics of {ckpt_path}")
        print(table)
    return values
