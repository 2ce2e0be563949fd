"""Tasks that run.py dispatches to (``task=`` config group): train, test, predict, summary, cluster_features."""
