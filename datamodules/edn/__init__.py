"""Everybody Dance Now's data: keypoints (OpenPose JSON, mappings, smoothing, normalisation), the label renderer,
the synthetic dancer, video frames, and the datamodule of consecutive frame pairs.

Docs: docs/papers/edn.md (commands, datasets, official weights, measured figures)."""

from datamodules.edn.datamodule import EDNDataModule, SyntheticDanceDataset

__all__ = ["EDNDataModule", "SyntheticDanceDataset"]
