"""task=test: metrics of a checkpoint on the dataset's test split (the one evaluation task).

PSNR and SSIM always (torchmetrics, on [0, 1] images, data_range 1). FID, KID and LPIPS need pretrained networks
that this code never downloads; one rule for all (tasks/image_metrics.py): the config names a local file
(``task.fid_weights``, ``task.lpips_weights``; null = the torch hub cache, where ``task=fetch_weights`` puts it);
without it the metric is reported as ``skipped: <one line: the file, its URL, the fetch command>`` in the table,
in ``metrics.json`` and as a log warning. A model's own protocol (``model.test_metrics``) adds its figures.

Writes ``<run dir>/metrics.md`` (markdown table + the weight files with their SHA-256 and the package versions),
``<run dir>/metrics.json`` (the same), sample grids (label | generated | real) under ``<run dir>/test_samples/``,
logs ``test/<metric>`` to the configured loggers and returns ``{metric: value}`` for the metrics computed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from datamodules.atomic_writes import atomic_write_text
from datamodules.image_grids import image_grid, save_grid
from lightning_modules.factory import safe_instantiate
from tasks import image_metrics
from tasks.builders import build_datamodule, build_trainer
from tasks.inference import inference_device, load_for_inference, progress, require_checkpoint, to_device
from tasks.run_logs import build_loggers

log = logging.getLogger(__name__)

KNOWN_METRICS = ("psnr", "ssim", "lpips", "fid", "kid")


# ---------------------------------------------------------------------------------------------- metrics
def build_metrics(cfg: DictConfig, device: torch.device) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The requested metrics that can run; returns (metrics, {skipped name: reason}, {metric: weight file used}).

    One rule for the metrics with pretrained networks (tasks/image_metrics.py): the config names a local file
    (null = where ``task=fetch_weights`` puts it); without it the metric is skipped with a one-line reason."""
    requested = list(dict.fromkeys(str(m).lower() for m in (cfg.task.get("metrics") or [])))
    unknown = [m for m in requested if m not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"task.metrics has unknown metrics {unknown}; use some of {list(KNOWN_METRICS)}")
    metrics: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    used: dict[str, str] = {}
    for name in [m for m in requested if m in ("psnr", "ssim")]:
        metrics[name] = _make_metric(name)
    if "lpips" in requested:
        lpips, reason, lpips_used = image_metrics.build_lpips(cfg.task)
        if lpips is None:
            skipped["lpips"] = str(reason)
        else:
            metrics["lpips"] = lpips
            used.update(lpips_used)
    inception = [m for m in requested if m in ("fid", "kid")]
    if inception:
        reason = image_metrics.fidelity_unavailable()
        path = None
        if reason is None:
            path, reason = image_metrics.weight_file(image_metrics.INCEPTION, cfg.task.get("fid_weights"))
        if path is None:
            skipped.update({m: str(reason) for m in inception})
        else:
            metrics.update(image_metrics.build_fid_kid(
                path, inception, int(cfg.task.get("fid_feature", 2048)), int(cfg.task.get("kid_subsets", 100)),
                int(cfg.task.get("kid_subset_size", 1000))))
            used.update({m: path for m in inception})
    for name, reason in skipped.items():
        log.warning("metric %s skipped: %s", name, reason)
    ordered = {m: metrics[m].to(device) for m in requested if m in metrics}
    return ordered, skipped, used


def _make_metric(name: str) -> Any:
    if name == "psnr":
        from torchmetrics.image import PeakSignalNoiseRatio

        return PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))  # mean of per-image PSNR
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    return StructuralSimilarityIndexMeasure(data_range=1.0)


def _update(name: str, metric: Any, fake: torch.Tensor, real: torch.Tensor) -> None:
    if name in ("fid", "kid"):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    else:
        metric.update(fake, real)


def _compute(name: str, metric: Any, n_images: int) -> float:
    if name == "kid":  # KID's subsets cannot be larger than the split (torchmetrics raises); mean of the subsets
        metric.subset_size = min(int(metric.subset_size), n_images)
        return float(metric.compute()[0])
    return float(metric.compute())


# ------------------------------------------------------------------------------------------------ output
def metrics_table(values: Mapping[str, float], skipped: Mapping[str, str], order: list[str]) -> str:
    lines = ["| metric | value |", "| --- | --- |"]
    for name in order:
        if name in values:
            lines.append(f"| {name} | {values[name]:.4f} |")
        elif name in skipped:
            lines.append(f"| {name} | skipped: {skipped[name].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _provenance_md(weights: Mapping[str, Mapping[str, str]], found: Mapping[str, str]) -> str:
    """Markdown lines: the weight files (path, SHA-256) and package versions a figure was computed with."""
    lines = ["weight files:" if weights else "weight files: none (no metric with a pretrained network ran)"]
    lines += [f"- {name}: `{w['path']}` (sha256 {w['sha256'][:16]}...)" for name, w in weights.items()]
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()))
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
    metrics, skipped, weights = build_metrics(cfg, device)
    module = module.to(device)
    datamodule.setup("test")
    loader = datamodule.test_dataloader()
    # the model's own metrics (model.test_metrics: a factory (cfg, module) -> object with update(batch, fake, real)
    # on [0, 1] images and compute() -> (values, skipped)), e.g. a pose distance
    extra = None
    if cfg.model.get("test_metrics") is not None:
        extra = safe_instantiate(cfg.model.test_metrics, "model.test_metrics")(cfg, module)
    grids = _GridWriter(os.path.join(cfg.paths.run_dir, "test_samples"),
                        max_grids=int(cfg.task.get("num_sample_grids", 2)))
    n_images = 0
    with torch.no_grad():
        for batch in progress(loader, "test", unit="batch"):
            batch = to_device(batch, device)
            real = module.to_unit_images(module.target_images(batch))
            fake = module.to_unit_images(module.generate(batch, **options))
            for name, metric in list(metrics.items()):
                try:
                    _update(name, metric, fake, real)
                except image_metrics.ImagesTooSmall as err:
                    skipped[name] = str(err)
                    log.warning("metric %s skipped: %s", name, err)
                    del metrics[name]
                    weights.pop(name, None)
            if extra is not None:
                extra.update(batch, fake, real)
            if grids.wants_more:
                grids.add({**module.sample_images(batch), "generated": fake, "real": real})
            n_images += real.shape[0]
    grids.flush()
    if n_images == 0:
        raise ValueError("the test split is empty; check dataset.num_test / the dataset's test folders")
    for name in [m for m in ("fid", "kid") if m in metrics and n_images < 2]:
        skipped[name] = f"needs at least 2 test images, got {n_images}"
        log.warning("metric %s skipped: %s", name, skipped[name])
        del metrics[name]
        weights.pop(name, None)

    values = {name: _compute(name, metric, n_images) for name, metric in metrics.items()}
    if extra is not None:
        extra_values, extra_skipped = extra.compute()
        values.update(extra_values)
        skipped.update(extra_skipped)
        weights.update(getattr(extra, "weights", {}))
    for name, v in values.items():
        if not math.isfinite(v):
            log.warning("metric %s is not finite (%s)", name, v)
    order = [str(m).lower() for m in dict.fromkeys(cfg.task.get("metrics") or [])]
    order += [k for k in [*values, *skipped] if k not in order]
    table = metrics_table(values, skipped, order)
    run_dir = str(cfg.paths.run_dir)
    shown = ", ".join(f"{k}={v}" for k, v in options.items()) or "the model's defaults"
    record = image_metrics.weight_record(weights)
    found = image_metrics.versions()
    md = (f"# Test metrics\n\ncheckpoint: `{ckpt_path}`  \nmodel: {cfg.model.name} / stage {cfg.stage.name}, "
          f"dataset: {cfg.dataset.name}, {n_images} test images, generate options: {shown}\n\n{table}"
          f"\n{_provenance_md(record, found)}")
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
        "weights": record,
        "versions": found,
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
    PSNR for stage decoder, style and content losses for stage transform) and write ``metrics.json``/``.md``.

    The model's own protocol (``model.test_metrics``, e.g. LST's paper comparison: content/style losses of the
    stylised images and frames per second) then runs over the same split on ``module.generate(batch)`` (``real`` is
    None: these models have no pixel-aligned target) and adds its figures and skipped reasons."""
    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg, callbacks=[], loggers=build_loggers(cfg))
    results = trainer.test(module, datamodule=datamodule, verbose=False)
    values = {k.removeprefix("test/"): float(v) for k, v in (results[0] if results else {}).items()}
    if not values:
        raise ValueError("the test split is empty; check dataset.num_test / the dataset's test folders")
    skipped: dict[str, str] = {}
    weights: dict[str, str] = {}
    if cfg.model.get("test_metrics") is not None and trainer.is_global_zero:
        device = inference_device(cfg)
        module = module.to(device).eval()
        extra = safe_instantiate(cfg.model.test_metrics, "model.test_metrics")(cfg, module)
        options = dict(cfg.task.get("generate") or {})
        with torch.no_grad():
            for batch in progress(datamodule.test_dataloader(), "test (protocol)", unit="batch"):
                batch = to_device(batch, device)
                extra.update(batch, module.generate(batch, **options), None)
        extra_values, extra_skipped = extra.compute()
        values.update(extra_values)
        skipped.update({k: v for k, v in extra_skipped.items() if k not in values})
        weights.update(getattr(extra, "weights", {}))
        for name, reason in skipped.items():
            log.warning("metric %s skipped: %s", name, reason)
    table = metrics_table(values, skipped, sorted(values) + sorted(skipped))
    run_dir = str(cfg.paths.run_dir)
    if trainer.is_global_zero:
        record = image_metrics.weight_record(weights)
        found = image_metrics.versions()
        atomic_write_text(os.path.join(run_dir, "metrics.md"),
                          f"# Test metrics\n\ncheckpoint: `{ckpt_path}`  \nmodel: {cfg.model.name} / stage "
                          f"{cfg.stage.name}, dataset: {cfg.dataset.name}\n\n{table}\n{_provenance_md(record, found)}")
        report = {"metrics": values, "skipped": skipped, "checkpoint": ckpt_path, "model": cfg.model.name,
                  "stage": cfg.stage.name, "dataset": cfg.dataset.name, "weights": record, "versions": found}
        atomic_write_text(os.path.join(run_dir, "metrics.json"), json.dumps(report, indent=2) + "\n")
        print(f"\ncondsynth: test metrics of {ckpt_path}")
        print(table)
    return values
