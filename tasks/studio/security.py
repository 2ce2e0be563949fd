"""What keeps the studio to its own user (the checks of Jupyter Server for a local web app):

- a **token** made at start (``secrets.token_urlsafe``; ``task.token`` fixes one), printed in the page's URL. The
  first page load with ``?token=`` sets it as an HttpOnly SameSite=Strict cookie (and redirects to ``/``, so the token
  leaves the address bar); every ``/api/*`` and ``/panel/*`` request needs it: that cookie, an ``Authorization:
  token <t>`` header or an ``X-Condsynth-Token`` header (scripts). Missing: 401, wrong: 403.
- a **Host allowlist** on every request (127.0.0.1, localhost, [::1], ``task.host``, ``task.allowed_hosts``): a page
  that rebinds its own DNS name to 127.0.0.1 still sends its own name as the Host, and gets 403.
- an **Origin check** on state-changing requests (POST/PUT/PATCH/DELETE): an ``Origin`` header, when present, must
  be the server's own; and no ``/api/*`` request may come from another site (``Sec-Fetch-Site``). Another port of
  127.0.0.1 is the same *site* for the browser (its SameSite cookies go along), so these two checks, not the cookie,
  keep a page of another local server out.
- a **request size limit counted as the bytes arrive** (:class:`Guard` wraps ``receive``), chunked or not, so a
  body over ``task.max_upload_bytes`` + ``task.max_request_overhead_bytes`` gets 413 before it is spooled.
- headers on every response: no framing, no content sniffing, a Content-Security-Policy that allows only the
  studio's own scripts (the page has no inline script), no Referer.
- :func:`checkpoint_to_load`: ``POST /api/models`` loads only regular files under the folders given at start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from omegaconf import DictConfig, OmegaConf
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasks.config import ConfigError
from tasks.studio.errors import StudioError
from tasks.studio.models import checkpoint_paths

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # bind addresses that listen on every interface
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PROTECTED_PREFIXES = ("/api/", "/panel/")  # everything that returns model output or changes state
OTHER_SITE = frozenset({"cross-site", "same-site"})  # Sec-Fetch-Site values of a request another page started
TOKEN_HEADER = "x-condsynth-token"
SYSTEM_DIRS = ("/proc", "/sys", "/dev")  # never a checkpoint, whatever task.model_dirs says
SECURITY_HEADERS = (
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; "
                                "base-uri 'none'; form-action 'self'; object-src 'none'"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "same-origin"),
)


# ------------------------------------------------------------------------------------------- settings
def studio_token(value: Any) -> str:
    """``task.token``: null -> a new random token; a non-empty string (or number) -> itself; anything else (an empty
    string, false) is a ConfigError: the token cannot be switched off."""
    if value is None:
        return secrets.token_urlsafe(32)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ConfigError(f"task.token={value!r} cannot be used: the token is the studio's protection and cannot be "
                          f"turned off; leave task.token=null for a random one, or set a non-empty string")
    return str(value)


def token_cookie(token: str) -> str:
    """The cookie's name: one per token, so two studios on two ports of one host (cookies do not keep ports apart)
    do not overwrite each other's."""
    return "condsynth_token_" + hashlib.sha256(token.encode()).hexdigest()[:12]


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in WILDCARD_HOSTS


def allowed_hosts(host: str, extra: Iterable[str]) -> frozenset[str] | None:
    """The Host names the server answers: the loopback names, ``task.host`` and ``task.allowed_hosts``; None (any
    name, the token the only check) for a wildcard ``task.host`` with no ``task.allowed_hosts``."""
    extra = [str(h).lower().strip("[]") for h in extra]
    if is_wildcard(host) and not extra:
        return None
    names = {*LOCAL_HOSTS, *extra}
    if not is_wildcard(host):
        names.add(host.lower().strip("[]"))
    return frozenset(names)


def startup_lines(host: str, port: int, token: str, hosts: frozenset[str] | None) -> list[str]:
    """What ``task=studio`` prints at start: the tokened URL (as Jupyter does) and, for a server reachable from
    the network, a warning that the token is then its only protection."""
    shown = "127.0.0.1" if is_wildcard(host) else (f"[{host}]" if ":" in host else host)
    lines = [f"condsynth studio: http://{shown}:{port}/?token={token}"]
    if not host.startswith("127.") and host.lower() not in ("localhost", "::1", "[::1]"):
        reach = "every address of this machine" if is_wildcard(host) else host
        check = ("any Host name is accepted" if hosts is None else
                 f"Host names {sorted(hosts)} are accepted")
        lines.append(f"warning: task.host={host} serves the studio on {reach}: anyone who can reach port {port} "
                     f"and has the token can load checkpoints and run the models; the token is the only protection "
                     f"({check}; the traffic is not encrypted). Keep the token secret.")
    return lines


def positive(task: DictConfig, key: str) -> float:
    """``task.<key>`` as a number > 0, else a ConfigError naming the key."""
    value = task.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"task.{key}={value!r} must be a number > 0")
    return value


def model_dirs(cfg: DictConfig) -> list[str]:
    """The folders ``POST /api/models`` may load from (real paths): ``paths.output_dir`` (every run folder), the
    folders of the checkpoints of ``task.ckpt_path`` and ``task.model_dirs``."""
    extra = cfg.task.get("model_dirs") or []
    if OmegaConf.is_config(extra):
        extra = OmegaConf.to_container(extra, resolve=True)
    if isinstance(extra, (str, os.PathLike)):
        extra = [extra]
    for folder in extra:
        if not os.path.isdir(str(folder)):
            raise ConfigError(f"task.model_dirs: {folder} is not a folder; list folders that hold checkpoints")
    dirs = [str(cfg.paths.output_dir), *(os.path.dirname(os.path.abspath(p)) for p in
                                         checkpoint_paths(cfg.task.ckpt_path)), *map(str, extra)]
    return sorted({os.path.realpath(d) for d in dirs})


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def checkpoint_to_load(path: str, dirs: list[str]) -> str:
    """The real path of ``path`` when it is a regular file under one of ``dirs``, checked without opening it
    (``realpath``, then ``os.stat``: a FIFO, a device, a socket or a folder is refused). Else one 400 whose message
    is the same whether the file is missing, elsewhere or not a regular file, so the answer tells a client nothing
    about other files."""
    refused = StudioError(f"{path!r} is not a checkpoint the studio may load: POST /api/models loads regular files "
                          f"under the folders given at start ({', '.join(dirs)}; task.model_dirs adds more)", 400)
    try:
        real = os.path.realpath(path)
        if any(_under(real, d) for d in SYSTEM_DIRS) or not any(_under(real, d) for d in dirs):
            raise refused
        if not stat.S_ISREG(os.stat(real).st_mode):
            raise refused
    except (OSError, ValueError, TypeError):  # missing, unreadable folder, a NUL byte in the path
        raise refused from None
    return real


@dataclass(frozen=True)
class Policy:
    """The settings :class:`Guard` enforces, fixed at start."""

    token: str
    hosts: frozenset[str] | None  # None: any Host (wildcard task.host and no task.allowed_hosts)
    max_body_bytes: int

    @property
    def cookie(self) -> str:
        return token_cookie(self.token)


# ------------------------------------------------------------------------------------------- the middleware
class BodyTooLarge(Exception):
    """Raised from the wrapped ``receive`` once a request body passes the limit."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def host_name(host: str) -> str:
    """``127.0.0.1:7860`` -> ``127.0.0.1``, ``[::1]:7860`` -> ``::1`` (lowercase)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _json(status: int, message: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> tuple[Message, Message]:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})


class Guard:
    """Pure ASGI middleware in front of the studio app: Host, Origin, token, body size, response headers."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy
        self._token = policy.token.encode()

    def _valid(self, token: str | None) -> bool:
        return token is not None and secrets.compare_digest(token.encode(), self._token)

    def _request_token(self, scope: Scope) -> str | None:
        auth = _header(scope, b"authorization")
        if auth:
            kind, _, value = auth.strip().partition(" ")
            if kind.lower() in ("token", "bearer"):
                return value.strip()
        header = _header(scope, TOKEN_HEADER.encode())
        if header is not None:
            return header.strip()
        return cookie_parser(_header(scope, b"cookie") or "").get(self.policy.cookie)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request is refused before the app sees it."""
        host = _header(scope, b"host")
        if host is None:
            return 403, "the request has no Host header"
        if self.policy.hosts is not None and host_name(host) not in self.policy.hosts:
            return 403, (f"Host {host!r} is not this studio's (it answers {sorted(self.policy.hosts)}; "
                         f"task.allowed_hosts adds names)")
        method, path = scope["method"], scope["path"]
        if method in STATE_CHANGING:
            origin = _header(scope, b"origin")
            if origin is not None:
                parts = urlsplit(origin)
                if parts.scheme != scope.get("scheme", "http") or parts.netloc.lower() != host.strip().lower():
                    return 403, f"Origin {origin!r} is not this studio's: requests from other pages are refused"
        protected = path.startswith(PROTECTED_PREFIXES)
        if protected and _header(scope, b"sec-fetch-site") in OTHER_SITE:
            return 403, "a request started by a page of another site or port is refused"
        if protected:
            token = self._request_token(scope)
            if token is None:
                return 401, ("this studio needs its token: open the URL printed at start (…/?token=…), or send "
                             "'Authorization: token <token>' or 'X-Condsynth-Token: <token>'")
            if not self._valid(token):
                return 403, "the token is not this studio's (a restarted studio prints a new URL)"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS)]}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            for message in _json(*refusal):
                await send_with_headers(message)
            return
        scope.setdefault("state", {})["authorized"] = self._valid(self._request_token(scope))
        if scope["path"] == "/" and "token" in (query := parse_qs(scope.get("query_string", b"").decode())):
            await self._log_in(query["token"][-1], send_with_headers)
            return
        await self._limited(scope, receive, send_with_headers)

    async def _log_in(self, token: str, send: Send) -> None:
        """``/?token=<t>``: set the cookie and send the browser to ``/`` (the token leaves the address bar)."""
        if not self._valid(token):
            for message in _json(403, "the token in the URL is not this studio's (a restarted studio prints a new "
                                      "URL)"):
                await send(message)
            return
        cookie = f"{self.policy.cookie}={self.policy.token}; HttpOnly; SameSite=Strict; Path=/"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()), (b"content-length", b"0"),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b""})

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a ``receive`` that counts the body's bytes and stops at the limit: the app's answer is
        replaced by a 413 (the connection is closed, so the client stops sending)."""
        limit = self.policy.max_body_bytes
        too_large = _json(413, f"the request body is over the limit of {limit} bytes (task.max_upload_bytes + "
                               f"task.max_request_overhead_bytes): send a smaller file or raise the limit",
                          [(b"connection", b"close")])
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            for message in too_large:
                await send(message)
            return
        received, tripped, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, tripped
            if tripped:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    tripped = True
                    raise BodyTooLarge
            return message

        async def send_unless_tripped(message: Message) -> None:
            nonlocal started
            if tripped:  # whatever the app answers to the cut-off body (a parse error, a 500): the 413 instead
                if message["type"] == "http.response.start" and not started:
                    started = True
                    for own in too_large:
                        await send(own)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, send_unless_tripped)
        except Exception:  # noqa: BLE001 - BodyTooLarge itself, or what the app made of it
            if not tripped:
                raise
            if not started:
                started = True
                for own in too_large:
                    await send(own)
