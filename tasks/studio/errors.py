"""The studio's HTTP errors: a user's mistake is a 4xx with a one-line message, a failure inside a model a 500."""

from __future__ import annotations


class StudioError(Exception):
    """A request that cannot be served as sent: ``status`` (4xx) and a message saying what to change."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = int(status)


def bad_request(message: str) -> StudioError:
    return StudioError(message, 400)


def conflict(message: str) -> StudioError:
    """The session is not in a state for this request (e.g. no scene loaded yet)."""
    return StudioError(message, 409)


def too_large(message: str) -> StudioError:
    return StudioError(message, 413)
