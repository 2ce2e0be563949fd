"""Linear Style Transfer's own tasks: ``stylize`` (images), ``stylize_video``, ``export``; ``photoreal`` filter.

Docs: docs/papers/lst.md (commands, datasets, official weights, measured figures)."""
