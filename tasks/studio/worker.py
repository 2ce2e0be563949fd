"""One worker thread for every model call and scene edit, so requests from two tabs never interleave.

Each call has a time budget (``task.request_timeout_s``) and stops waiting when its client disconnects: a job that
has not started yet is then skipped (it never runs, the session's state is untouched); one already running on the
thread cannot be interrupted, it finishes and its answer is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tasks.studio.errors import StudioError

T = TypeVar("T")
CLIENT_GONE = 499  # nginx's "client closed request": the answer goes nowhere, the status shows in the logs


class Worker:
    """A single-thread queue: :meth:`run` awaits ``fn(*args)`` after every job submitted before it."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = float(timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-worker")

    async def run(self, fn: Callable[..., T], *args: Any,
                  disconnected: Callable[[], Awaitable[Any]] | None = None) -> T:
        """``fn(*args)`` on the worker thread. A 503 when it is still queued after ``timeout_s`` (the server is
        busy; it is skipped), a 504 when it started but has not finished by then; when ``disconnected()`` returns
        first (the client left), the job is skipped if it has not started and the request ends with 499."""
        job = self._pool.submit(fn, *args)
        result = asyncio.wrap_future(job)
        watch = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        try:
            done, _ = await asyncio.wait([f for f in (result, watch) if f is not None], timeout=self.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            job.cancel()
            raise
        finally:
            if watch is not None:
                watch.cancel()
        if result in done:
            return result.result()
        started = not job.cancel()  # cancel() skips a job still in the queue; False once it runs
        result.cancel()
        if watch is not None and watch in done:
            raise StudioError("the client disconnected before the model answered"
                              + ("" if started else "; its queued job was skipped"), CLIENT_GONE)
        if started:
            raise StudioError(f"the model did not answer within task.request_timeout_s={self.timeout_s:g} s: use a "
                              f"smaller input, or raise the limit", 504)
        raise StudioError(f"the studio is busy: this request waited task.request_timeout_s={self.timeout_s:g} s "
                          f"behind others and was dropped; try again", 503)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
