"""task=studio: load the checkpoints, then serve the page with uvicorn until Ctrl-C / SIGTERM."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from tasks.studio.app import Studio, create_app
from tasks.studio.models import checkpoint_paths

log = logging.getLogger(__name__)


def build_studio(cfg: DictConfig) -> Studio:
    """A :class:`Studio` with every checkpoint of ``task.ckpt_path`` loaded (each model at most once)."""
    studio = Studio(cfg)
    seen: dict[str, str] = {}
    for path in checkpoint_paths(cfg.task.ckpt_path):
        panel = studio.load(path)
        if panel.model in seen:
            raise ValueError(f"task.ckpt_path holds two {panel.model} checkpoints ({seen[panel.model]} and {path}); "
                             f"pass one per model")
        seen[panel.model] = path
    return studio


def studio(cfg: DictConfig) -> None:
    """Serve the studio at ``http://task.host:task.port/``; uvicorn stops cleanly on SIGINT and SIGTERM."""
    import uvicorn

    app = create_app(build_studio(cfg))
    host, port = str(cfg.task.host), int(cfg.task.port)
    print(f"\ncondsynth studio: http://{host}:{port}/  (models: {', '.join(app.state.studio.panels)}; Ctrl-C stops)",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
