"""The panel interface: what a paper adds to the studio. The server mounts ``panel.router()`` under
``/api/<model>`` and the page loads ``panel.script`` (a plain JS file) into a tab titled ``panel.title``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import hydra
from fastapi import APIRouter, Request, UploadFile

from tasks.studio.models import LoadedCheckpoint


class Studio(Protocol):
    """What a panel's routes use of the server (:class:`tasks.studio.app.Studio` implements it): run a panel method
    on the worker with the session's state, and read an upload within the limits."""

    async def call(self, request: Request, model: str, method: str, *args: Any) -> Any: ...

    async def read_upload(self, upload: UploadFile | None, name: str, required: bool = True) -> bytes | None: ...


class Panel:
    """Base class of a model's panel. Subclasses set ``model``, ``title``, ``script`` and implement
    :meth:`load` (build the model from the checkpoint, once), :meth:`new_state` (one session's state),
    :meth:`routes` (add the endpoints to ``router``; each awaits ``studio.call(request, model, "<method>", ...)``,
    which runs ``panel.<method>(state, ...)`` on the worker with the session's state) and :meth:`info` (what the
    page needs to start: classes, sizes, ...)."""

    model: str = ""
    title: str = ""
    script: Path | None = None

    def __init__(self, checkpoint: LoadedCheckpoint, task: Any) -> None:
        self.checkpoint = checkpoint
        self.task = task

    def load(self) -> None:
        raise NotImplementedError

    def new_state(self) -> Any:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {}

    def routes(self, router: APIRouter, studio: Studio) -> None:
        raise NotImplementedError

    def router(self, studio: Studio) -> APIRouter:
        router = APIRouter(prefix=f"/api/{self.model}")
        self.routes(router, studio)
        return router


def panel_class(panels: Any, model: str) -> type[Panel]:
    """The class named for ``model`` in ``task.panels``."""
    target = panels[model]
    cls = hydra.utils.get_class(str(target))
    if not (isinstance(cls, type) and issubclass(cls, Panel)):
        raise TypeError(f"task.panels.{model}={target} is not a tasks.studio.panels.Panel subclass")
    return cls
