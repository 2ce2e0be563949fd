"""task=studio: load the checkpoints, then serve the page with uvicorn until Ctrl-C / SIGTERM."""

from __future__ import annotations

import logging
from typing import Any

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
    server = _QuietExitServer(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                             timeout_graceful_shutdown=5))
    server.run()
    print("condsynth studio: stopped", flush=True)


def _server_class() -> type:
    import uvicorn

    class QuietExitServer(uvicorn.Server):
        """uvicorn's server, which re-raises SIGINT/SIGTERM after its graceful shutdown (a KeyboardInterrupt
        traceback on Ctrl-C, exit status -15 on SIGTERM); here a stop signal ends the task normally instead."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return QuietExitServer


def _QuietExitServer(config: Any) -> Any:  # noqa: N802 - reads as the class it builds
    return _server_class()(config)


class BackgroundServer:
    """The app served by uvicorn on a thread, on 127.0.0.1 and a free port (tests, benchmarks); ``stop()`` ends it."""

    def __init__(self, app: Any, host: str = "127.0.0.1", start_timeout_s: float = 30.0) -> None:
        import socket
        import threading
        import time

        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((host, 0))
        self.url = f"http://{host}:{self._socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the studio server did not start at {self.url}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self._socket.close()
