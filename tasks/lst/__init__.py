"""Linear Style Transfer's own tasks: ``stylize`` (images), ``stylize_video``, ``export``; ``photoreal`` filter."""
