"""pix2pixHD's own tasks: ``cluster_features`` (per-class K-means of instance features, §3.4).

Docs: docs/papers/pix2pixhd.md (commands, datasets, official weights, measured figures)."""
