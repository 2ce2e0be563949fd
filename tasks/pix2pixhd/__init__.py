"""pix2pixHD's own tasks: ``cluster_features`` (per-class K-means of instance features, §3.4)."""
