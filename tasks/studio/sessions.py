"""Per-browser-session state: a cookie names the session, each panel keeps its own state object in it."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

COOKIE = "condsynth_studio"


class SessionStore:
    """Up to ``max_sessions`` sessions (least recently used dropped first); each a dict panel name -> state."""

    def __init__(self, max_sessions: int) -> None:
        if max_sessions < 1:
            raise ValueError(f"task.max_sessions={max_sessions} must be >= 1")
        self.max_sessions = int(max_sessions)
        self._sessions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def new_id(self) -> str:
        return secrets.token_urlsafe(16)

    def state(self, session_id: str, panel: str, factory: Callable[[], Any]) -> Any:
        """The panel's state in this session, made by ``factory`` on first use."""
        with self._lock:
            states = self._sessions.pop(session_id, None) or {}
            self._sessions[session_id] = states
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            if panel not in states:
                states[panel] = factory()
            return states[panel]

    def __len__(self) -> int:
        return len(self._sessions)
