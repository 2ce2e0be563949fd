"""The studio's FastAPI app: pages, /health, checkpoint loading, sessions, limits and error handling.

Every request passes :class:`tasks.studio.security.Guard` first (Host, Origin, token, body size, headers).

Every route of a panel goes through :meth:`Studio.call`, which finds the session's state and runs the panel's
method on the single worker thread. Errors: :class:`StudioError` -> its 4xx, a user error (ValueError and the
other USER_ERRORS of the command line, e.g. a label id outside the model's classes) -> 400, anything else raised
by a model -> 500 with the message; the server keeps serving after each.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from omegaconf import DictConfig
from pydantic import BaseModel

from tasks.cli import USER_ERRORS, one_line
from tasks.studio.errors import StudioError, bad_request
from tasks.studio.images import check_upload
from tasks.studio.models import checkpoint_config
from tasks.studio.panels import Panel, panel_class
from tasks.studio.security import (
    Guard,
    Policy,
    allowed_hosts,
    checkpoint_to_load,
    model_dirs,
    positive,
    studio_token,
)
from tasks.studio.sessions import COOKIE, SessionStore
from tasks.studio.worker import Worker

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"


class Studio:
    """The loaded panels (one per model), the sessions and the worker queue of one server."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.task = cfg.task
        for key in ("max_upload_bytes", "max_request_overhead_bytes", "max_image_side", "max_image_pixels",
                    "max_aspect_ratio", "max_stroke_points", "request_timeout_s"):
            positive(self.task, key)
        self.max_upload_bytes = int(self.task.max_upload_bytes)
        self.token = studio_token(self.task.get("token"))
        self.hosts = allowed_hosts(str(self.task.host), self.task.get("allowed_hosts") or [])
        self.policy = Policy(self.token, self.hosts,
                             self.max_upload_bytes + int(self.task.max_request_overhead_bytes))
        self.model_dirs = model_dirs(cfg)
        self.sessions = SessionStore(int(self.task.max_sessions))
        self.worker = Worker(float(self.task.request_timeout_s))
        self.panels: dict[str, Panel] = {}

    def load(self, path: str) -> Panel:
        """Load a checkpoint into its model's panel (replacing an earlier one of that model)."""
        loaded = checkpoint_config(path, self.cfg, self.task.panels)
        panel = panel_class(self.task.panels, loaded.model)(loaded, self.task)
        panel.load()
        self.panels[loaded.model] = panel
        log.info("studio: %s panel from %s (stage %s)", loaded.model, path, loaded.stage)
        return panel

    def panel(self, model: str) -> Panel:
        if model not in self.panels:
            raise StudioError(f"no {model} checkpoint is loaded: start the studio with its checkpoint in "
                              f"task.ckpt_path, or POST its path to /api/models", 404)
        return self.panels[model]

    async def call(self, request: Request, model: str, method: str, *args: Any) -> Any:
        """``panel.<method>(state, *args)`` on the worker, with this session's state of the current panel."""
        panel = self.panel(model)
        key = f"{model}:{id(panel)}"  # a reloaded checkpoint starts every session afresh
        state = self.sessions.state(request.state.session, key, panel.new_state)
        return await self.worker.run(getattr(panel, method), state, *args, disconnected=until_disconnected(request))

    async def read_upload(self, upload: UploadFile | None, name: str, required: bool = True) -> bytes | None:
        if upload is None or (not upload.filename and not required):
            if required:
                raise bad_request(f"the request has no file '{name}': send it as multipart form data")
            return None
        data = await upload.read(self.max_upload_bytes + 1)
        return check_upload(data, upload.filename or name, self.max_upload_bytes)

    def describe(self) -> list[dict[str, Any]]:
        return [{"model": m, "title": p.title, "script": f"/panel/{m}.js", "checkpoint": p.checkpoint.path,
                 "stage": p.checkpoint.stage, "info": p.info()} for m, p in self.panels.items()]


def until_disconnected(request: Request) -> Any:
    """A coroutine function that returns when the client of ``request`` (whose body is read) disconnects."""

    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return wait


class LoadRequest(BaseModel):
    path: str


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(studio: Studio) -> FastAPI:
    """The app serving ``studio``: the page, the panels' routes, /health and /api/models."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        studio.worker.close()

    # no /docs, /redoc or /openapi.json: the studio is a page, not a public API
    app = FastAPI(title="condsynth studio", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = studio
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    mounted: set[str] = set()

    def mount_panels() -> None:
        for model, panel in studio.panels.items():
            if model not in mounted:
                app.include_router(panel.router(studio))
                mounted.add(model)

    @app.middleware("http")
    async def session_and_errors(request: Request, call_next: Any) -> Response:
        session = request.cookies.get(COOKIE)
        new = session is None
        request.state.session = session or studio.sessions.new_id()
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except StudioError as err:
            response = _error(err.status, str(err))
        except USER_ERRORS as err:
            response = _error(400, one_line(err))
        except Exception as err:  # noqa: BLE001 - a failure inside a model: report it, keep serving
            log.exception("studio: %s %s failed", request.method, request.url.path)
            response = _error(500, f"{type(err).__name__}: {one_line(err)}")
        response.headers["X-Server-Ms"] = f"{(time.perf_counter() - start) * 1000:.1f}"
        if new:
            response.set_cookie(COOKIE, request.state.session, httponly=True, samesite="strict")
        return response

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        if not request.state.authorized:  # open to any local client; what is loaded only with the token
            return {"status": "ok"}
        return {"status": "ok", "models": {m: p.checkpoint.stage for m, p in studio.panels.items()},
                "sessions": len(studio.sessions)}

    @app.get("/api/panels")
    async def panels() -> list[dict[str, Any]]:
        mount_panels()  # a load that finished after its request's time budget (504) still gets its routes
        return studio.describe()

    @app.post("/api/models")
    async def load_model(body: LoadRequest, request: Request) -> list[dict[str, Any]]:
        path = checkpoint_to_load(body.path, studio.model_dirs)  # before anything reads the file
        await studio.worker.run(studio.load, path, disconnected=until_disconnected(request))
        mount_panels()
        return studio.describe()

    @app.get("/panel/{model}.js")
    async def panel_script(model: str) -> FileResponse:
        script = studio.panel(model).script
        if script is None:
            raise StudioError(f"the {model} panel has no script", 404)
        return FileResponse(script, media_type="text/javascript")

    mount_panels()
    app.add_middleware(Guard, policy=studio.policy)  # added last: runs first, before the session middleware
    return app

