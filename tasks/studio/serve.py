"""task=studio: load the checkpoints, then serve the page with uvicorn until Ctrl-C / SIGTERM."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from tasks.studio.models import checkpoint_paths

log = logging.getLogger(__name__)


def require_web_stack() -> None:
    """The studio extra's packages, or a one-line error saying how to install them."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(f"task=studio needs {', '.join(missing)} (the studio extra): pip install -e "
                                  f"'.[studio]' or make install")


def build_studio(cfg: DictConfig) -> Any:
    """A :class:`tasks.studio.app.Studio` with every checkpoint of ``task.ckpt_path`` loaded (each model once)."""
    require_web_stack()
    from tasks.studio.app import Studio

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
    require_web_stack()
    from tasks.studio.app import create_app

    app = create_app(build_studio(cfg))
    host, port = str(cfg.task.host), int(cfg.task.port)
    announce(app.state.studio, host, port)
    run_until_signal(app, host, port)
    print("condsynth studio: stopped", flush=True)


def announce(studio: Any, host: str, port: int) -> None:
    """Print the page's URL with the token (open it once: it sets the cookie) and, for a server reachable from
    the network, the warning that the token is then its only protection."""
    from tasks.studio.security import startup_lines

    lines = startup_lines(host, port, studio.token, studio.hosts)
    print(f"\n{lines[0]}  (models: {', '.join(studio.panels)}; Ctrl-C stops)", *lines[1:], sep="\n", flush=True)


def run_until_signal(app: Any, host: str, port: int) -> None:
    """Serve ``app`` until SIGINT / SIGTERM, then shut down gracefully and return. (uvicorn itself re-raises the
    signal after its shutdown: a KeyboardInterrupt traceback on Ctrl-C, exit status -15 on SIGTERM.)"""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)).run()


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
