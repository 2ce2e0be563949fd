"""Everybody Dance Now\x27s own tasks: extract_poses, transfer.

Docs: docs/papers/edn.md (commands, datasets, official weights, measured figures)."""
