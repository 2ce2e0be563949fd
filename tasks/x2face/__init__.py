"""X2Face tasks: reenact (drive a source face with a video, pose codes or audio).

Docs: docs/papers/x2face.md (commands, datasets, official weights, measured figures)."""
