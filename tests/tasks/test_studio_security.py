"""The studio answers only its user (tasks/studio/security.py): token, Host allowlist, Origin, the /api/models path
allowlist, body and image limits, the worker's time budget, docs off and the response headers. FastAPI's TestClient
where it can show the check; a real uvicorn server where the check is about bytes on a socket (a chunked body, a
client that disconnects). An LST-only studio on a tiny checkpoint (tests/tasks/_studio.py)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.tasks._studio import LOCAL, Recorder, lst_checkpoint, studio_client, studio_config

pytest.importorskip("fastapi", reason="the studio extra is not installed (pip install -e .[studio])")
httpx = pytest.importorskip("httpx", reason="the studio extra is not installed (pip install -e .[studio])")
from fastapi.testclient import TestClient  # noqa: E402

from tasks.config import ConfigError  # noqa: E402
from tasks.studio.app import Studio, create_app  # noqa: E402
from tasks.studio.errors import StudioError  # noqa: E402
from tasks.studio.images import ImageLimits  # noqa: E402
from tasks.studio.security import startup_lines, token_cookie  # noqa: E402
from tasks.studio.serve import BackgroundServer, build_studio  # noqa: E402

LST = "/api/lst"
WAIT_S = 20.0  # the most a check below waits for the server; each takes well under a second


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    return lst_checkpoint(tmp_path_factory.mktemp("studio_security"))


@pytest.fixture(scope="module")
def studio(ckpt: str):
    return build_studio(studio_config([ckpt]))


@pytest.fixture(scope="module")
def live(studio) -> Iterator[tuple[BackgroundServer, Recorder]]:
    """The studio on a real uvicorn server (127.0.0.1, a free port), every answer recorded."""
    app = Recorder(create_app(studio))
    server = BackgroundServer(app)
    yield server, app
    server.stop()


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def rgb(seed: int, h: int = 40, w: int = 48) -> bytes:
    return png(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8))


def bare(studio, **kwargs) -> TestClient:
    """A client that sends no token (a page of another site, or a script that has not got it)."""
    return studio_client(studio, token=False, **kwargs)


# ------------------------------------------------------------------------------------------- token
def test_api_and_panel_routes_need_the_token(studio) -> None:
    sessions = len(studio.sessions)
    for client, status in ((bare(studio), 401), (bare(studio, headers={"X-Condsynth-Token": "guess"}), 403),
                           (bare(studio, headers={"Authorization": "token guess"}), 403),
                           (bare(studio, cookies={token_cookie(studio.token): "guess"}), 403)):
        for method, path, kwargs in (("GET", "/api/panels", {}), ("GET", "/panel/lst.js", {}),
                                     ("POST", "/api/models", {"json": {"path": "/etc/passwd"}}),
                                     ("POST", f"{LST}/preview", {"json": {}}), ("DELETE", f"{LST}/style/0", {}),
                                     ("POST", f"{LST}/content", {"files": {"image": ("c.png", rgb(0))}})):
            res = client.request(method, path, **kwargs)
            assert res.status_code == status, (method, path, res.text)
            assert "token" in res.json()["error"]
    assert len(studio.sessions) == sessions  # refused requests make no session (they cannot evict the user's)
    assert bare(studio).get("/health").json() == {"status": "ok"}  # no token: alive, nothing about the models
    for headers in ({"X-Condsynth-Token": studio.token}, {"Authorization": f"token {studio.token}"},
                    {"Authorization": f"Bearer {studio.token}"}):
        assert bare(studio, headers=headers).get("/api/panels").status_code == 200, headers
    assert studio_client(studio).get("/health").json()["models"] == {"lst": "transform"}


def test_the_printed_url_sets_an_http_only_strict_cookie(studio) -> None:
    client = bare(studio)
    assert client.get("/").status_code == 200  # the page itself is served (it shows the 401 of its API calls)
    res = client.get(f"/?token={studio.token}", follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/"  # the token leaves the address bar
    cookie = res.headers["set-cookie"]
    assert cookie.startswith(f"{token_cookie(studio.token)}={studio.token};")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in cookie.split(";")}
    assert client.get("/api/panels").status_code == 200  # the cookie alone is enough
    wrong = bare(studio).get("/?token=guess", follow_redirects=False)
    assert wrong.status_code == 403 and "set-cookie" not in wrong.headers


def test_the_token_cannot_be_turned_off(ckpt: str) -> None:
    for value in ("''", "false", "' '"):
        with pytest.raises(ConfigError, match="task.token=.*cannot be turned off") as err:
            Studio(studio_config([ckpt], f"task.token={value}"))
        assert "\n" not in str(err.value)
    fixed = Studio(studio_config([ckpt], "task.token=my-own-token"))
    assert fixed.token == "my-own-token"
    a, b = Studio(studio_config([ckpt])), Studio(studio_config([ckpt]))
    assert a.token != b.token and len(a.token) >= 32  # a new random one at each start


def test_startup_prints_the_tokened_url_and_warns_for_every_interface() -> None:
    local = startup_lines("127.0.0.1", 7860, "t0k", frozenset({"127.0.0.1"}))
    assert local == ["condsynth studio: http://127.0.0.1:7860/?token=t0k"]
    every = startup_lines("0.0.0.0", 8080, "t0k", None)
    assert every[0] == "condsynth studio: http://127.0.0.1:8080/?token=t0k"
    assert every[1].startswith("warning: task.host=0.0.0.0") and "the token is the only protection" in every[1]


# ------------------------------------------------------------------------------------------- Host and Origin
def test_a_foreign_host_is_refused(studio) -> None:
    for host in ("evil.example", "evil.example:7860", "127.0.0.1.evil.example", "localhost.evil.example:80"):
        for path in ("/", "/static/studio.js", "/health", "/api/panels"):
            res = studio_client(studio).get(path, headers={"Host": host})
            assert res.status_code == 403 and "Host" in res.json()["error"], (host, path)
    for host in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860", "LOCALHOST"):
        assert studio_client(studio).get("/api/panels", headers={"Host": host}).status_code == 200, host


def test_hosts_for_every_interface(ckpt: str) -> None:
    anywhere = Studio(studio_config([ckpt], "task.host=0.0.0.0"))
    assert anywhere.hosts is None  # the token is the only check (the warning says so)
    assert studio_client(anywhere, base_url="http://192.168.1.5:7860").get("/api/panels").status_code == 200
    named = Studio(studio_config([ckpt], "task.host=0.0.0.0", "task.allowed_hosts=[studio.lan]"))
    assert studio_client(named, base_url="http://studio.lan:7860").get("/api/panels").status_code == 200
    assert studio_client(named, base_url="http://192.168.1.5:7860").get("/api/panels").status_code == 403


def test_a_foreign_origin_is_refused(studio, ckpt: str, monkeypatch) -> None:
    loads: list[str] = []
    monkeypatch.setattr(studio, "load", lambda path: loads.append(path))
    client = studio_client(studio)  # with the token: the check holds even for a request that has it
    for origin in ("http://localhost:9999", "http://127.0.0.1:9999", "http://evil.example", "null",
                   "https://127.0.0.1"):
        res = client.post("/api/models", json={"path": ckpt}, headers={"Origin": origin})
        assert res.status_code == 403 and "Origin" in res.json()["error"], origin
        assert client.delete(f"{LST}/style/0", headers={"Origin": origin}).status_code == 403
    for site in ("cross-site", "same-site"):  # another page started it (same-site: another port of 127.0.0.1)
        assert client.get("/api/panels", headers={"Sec-Fetch-Site": site}).status_code == 403
        assert client.post("/api/models", json={"path": ckpt}, headers={"Sec-Fetch-Site": site}).status_code == 403
    assert loads == []
    own = client.post("/api/models", json={"path": ckpt}, headers={"Origin": LOCAL, "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200 and loads == [os.path.realpath(ckpt)]


# ------------------------------------------------------------------------------------------- /api/models paths
def _post_within(client: TestClient, body: dict, what: str) -> httpx.Response:
    """POST /api/models on a thread; fails (instead of hanging) when the server does not answer within WAIT_S,
    e.g. because it opened a FIFO, which blocks until a writer comes."""
    answer: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answer.append(client.post("/api/models", json=body)), daemon=True)
    thread.start()
    thread.join(WAIT_S)
    if thread.is_alive():
        fifo = body["path"]
        if os.path.exists(fifo) and not os.path.isfile(fifo):  # free the reader, then fail
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"POST /api/models {what} did not answer within {WAIT_S} s: the server opened it")
    return answer[0]


def test_models_loads_only_regular_files_under_the_given_folders(studio, ckpt: str, tmp_path: Path,
                                                                monkeypatch) -> None:
    folder = Path(ckpt).parent  # a folder given at start (it holds task.ckpt_path)
    loads: list[str] = []
    client = studio_client(studio)
    outside = tmp_path / "copy.ckpt"
    shutil.copy(ckpt, outside)
    fifo = folder / "pipe.ckpt"
    os.mkfifo(fifo)
    res = _post_within(studio_client(studio), {"path": str(fifo)}, "a FIFO")  # the real loader: an open would block
    assert res.status_code == 400, res.text
    link_out = folder / "link_out.ckpt"  # inside, pointing outside: the real path decides
    link_out.symlink_to(outside)
    link_dev = folder / "zero.ckpt"
    link_dev.symlink_to("/dev/zero")
    spooled = tempfile.TemporaryFile(dir=folder)  # an open, unlinked file, as Starlette spools an upload
    spooled.write(Path(ckpt).read_bytes())
    spooled.flush()
    monkeypatch.setattr(studio, "load", lambda path: loads.append(path))  # from here: would anything be read?
    try:
        messages = {}
        for what, path in (("outside", outside), ("missing", folder / "missing.ckpt"), ("fifo", fifo),
                           ("link outside", link_out), ("link to a device", link_dev), ("a device", "/dev/zero"),
                           ("the folder", folder), ("stdin", "/proc/self/fd/0"),
                           ("a spooled upload", f"/proc/self/fd/{spooled.fileno()}"),
                           ("../ out", f"{folder}/../{Path(tmp_path).name}/copy.ckpt"), ("NUL", f"{ckpt}\0x")):
            res = _post_within(client, {"path": str(path)}, what)
            assert res.status_code == 400, (what, res.text)
            messages[what] = res.json()["error"].replace(repr(str(path)), "<path>")
        assert len(set(messages.values())) == 1, messages  # one message: nothing about which files exist
        assert "task.model_dirs" in messages["fifo"]
        assert loads == []  # nothing was read
    finally:
        spooled.close()
        for p in (fifo, link_out, link_dev):
            p.unlink()
    extra = tmp_path / "more"
    extra.mkdir()
    shutil.copy(ckpt, extra / "m.ckpt")
    more = Studio(studio_config([ckpt], f"task.model_dirs=[{extra}]"))  # (its panels are not needed here)
    more_loads: list[str] = []
    monkeypatch.setattr(more, "load", lambda path: more_loads.append(path))
    assert studio_client(more).post("/api/models", json={"path": str(extra / "m.ckpt")}).status_code == 200
    assert more_loads == [str((extra / "m.ckpt").resolve())]
    with pytest.raises(ConfigError, match="task.model_dirs: .* is not a folder"):
        Studio(studio_config([ckpt], f"task.model_dirs=[{tmp_path / 'none'}]"))


# ------------------------------------------------------------------------------------------- body and image limits
def test_a_chunked_body_past_the_limit_is_cut_off(studio, live) -> None:
    server, recorder = live
    chunk, chunks = 65536, 1024  # 64 MiB on offer; the limit is 200000 + 65536 bytes (tests/tasks/_studio.py)
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        boundary = b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n\r\n"
        yield boundary
        for _ in range(chunks):
            sent += 1
            yield b"\x89PNG" + b"0" * (chunk - 4)

    start, first = time.perf_counter(), len(recorder.received)
    with httpx.Client(base_url=server.url, timeout=WAIT_S) as client:
        res = client.post(f"{LST}/style", content=body(), headers={
            "X-Condsynth-Token": studio.token, "Content-Type": "multipart/form-data; boundary=x"})
    seconds = time.perf_counter() - start
    assert res.status_code == 413 and "task.max_upload_bytes" in res.json()["error"], res.text
    assert "content-length" not in {k.lower() for k in res.request.headers}  # it was chunked
    read = recorder.received[first]
    # the limit and the last piece uvicorn handed over (it buffers up to ~64 KiB plus a socket read per piece)
    assert read <= studio.policy.max_body_bytes + 4 * chunk, f"the app read {read} bytes"
    assert sent < chunks // 8, f"the client got to send {sent} of {chunks} chunks"  # then the connection closed
    print(f"\nchunked upload cut off: the app read {read} bytes, the client sent {sent} of {chunks} 64 KiB chunks "
          f"(socket buffers) in {seconds:.2f} s")
    with httpx.Client(base_url=server.url, timeout=WAIT_S) as client:  # still serving
        assert client.get("/health").status_code == 200
    # a Content-Length over the limit: 413 at once, before any byte of the body (none is sent here)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"POST {LST}/style HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Condsynth-Token: {studio.token}\r\n"
                     f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {64 << 20}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")


def test_a_long_thin_png_is_refused_before_any_allocation(studio, monkeypatch) -> None:
    strip = png(np.zeros((1, 2048, 3), np.uint8))
    assert len(strip) < 200  # 85 bytes as the audit's
    client = studio_client(studio)
    for path in ("/content", "/style"):
        res = client.post(LST + path, files={"image": ("strip.png", strip, "image/png")})
        assert res.status_code == 400 and "task.max_aspect_ratio" in res.json()["error"], res.text
    # with the ratio allowed, the check after resizing stops it: 32 x 16384 pixels at the 32-pixel preview
    panel = studio.panels["lst"]
    monkeypatch.setattr(panel, "image_limits", ImageLimits(2048, 100_000, 1e9))
    assert client.post(f"{LST}/content", files={"image": ("s.png", png(np.zeros((1, 512, 3), np.uint8)))}).is_success
    assert client.post(f"{LST}/style", files={"image": ("a.png", rgb(1))}).is_success
    res = client.post(f"{LST}/preview", json={"side": 32})
    assert res.status_code == 400 and "resized is 16384x32 pixels" in res.json()["error"], res.text
    assert "task.max_image_pixels=100000" in res.json()["error"]


def test_resize_checks_the_size_before_computing_pixels() -> None:
    import torch

    from tasks.lst.studio import resize_short

    with pytest.raises(StudioError, match="task.max_image_pixels"):
        resize_short(torch.zeros(1, 3, 1, 512), 64, ImageLimits(2048, 1_000_000, 1e9), "strip")
    assert resize_short(torch.zeros(1, 3, 4, 8), 8, ImageLimits(2048, 1_000_000, 8), "ok").shape == (1, 3, 8, 16)


# ------------------------------------------------------------------------------------------- time budget, disconnect
def _raw_request(port: int, token: str, path: str, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Condsynth-Token: {token}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_worker_budget_and_a_client_that_leaves(studio, live, monkeypatch) -> None:
    """A job still queued when its client leaves, or past task.request_timeout_s, is skipped; a running one past
    the budget gets 504."""
    server, recorder = live
    panel = studio.panels["lst"]
    ran: list[str] = []
    monkeypatch.setattr(panel, "preview", lambda st, body: ran.append("preview") or {"ok": True})
    pool = studio.worker._pool
    token = {"X-Condsynth-Token": studio.token}
    gate = threading.Event()
    blocker = pool.submit(gate.wait)  # the worker is busy with another (long) job
    try:
        port = int(server.url.rsplit(":", 1)[1])
        sock = _raw_request(port, studio.token, f"{LST}/preview", b"{}")
        _until(lambda: pool._work_queue.qsize() >= 1, "the preview to be queued")
        sock.close()  # the client leaves
        _until(lambda: any(s[1] == f"{LST}/preview" and s[4] == 499 for s in recorder.seen), "the 499")
        monkeypatch.setattr(studio.worker, "timeout_s", 0.3)
        busy = httpx.post(f"{server.url}{LST}/preview", json={}, headers=token, timeout=WAIT_S)
        assert busy.status_code == 503 and "task.request_timeout_s" in busy.json()["error"]
    finally:
        gate.set()
        blocker.result(timeout=WAIT_S)
    pool.submit(lambda: None).result(timeout=WAIT_S)  # the queue has drained
    assert ran == []  # neither queued job ran
    monkeypatch.setattr(panel, "preview", lambda st, body: time.sleep(0.6) or ran.append("slow") or {})
    slow = httpx.post(f"{server.url}{LST}/preview", json={}, headers=token, timeout=WAIT_S)
    assert slow.status_code == 504 and "did not answer within task.request_timeout_s=0.3" in slow.json()["error"]
    pool.submit(lambda: None).result(timeout=WAIT_S)
    assert studio_client(studio).get("/health").json()["status"] == "ok"


# ------------------------------------------------------------------------------------------- docs and headers
def test_no_api_docs_and_protective_headers(studio) -> None:
    client = studio_client(studio)
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404, path
    for res in (client.get("/"), client.get("/static/studio.js"), client.get("/api/panels"),
                bare(studio).get("/api/panels"), client.get("/", headers={"Host": "evil.example"})):
        assert res.headers["x-frame-options"] == "DENY"
        assert res.headers["x-content-type-options"] == "nosniff"
        csp = {d.strip().split(" ", 1)[0]: d.strip() for d in res.headers["content-security-policy"].split(";")}
        assert csp["default-src"] == "default-src 'self'"
        assert csp["img-src"] == "img-src 'self' data: blob:"
        assert csp["frame-ancestors"] == "frame-ancestors 'none'"
        assert res.headers["referrer-policy"] == "no-referrer"
    index = client.get("/").text
    assert "<script>" not in index  # no inline script: the CSP would block it


@pytest.mark.slow
def test_command_line_empty_token_is_a_one_line_error(ckpt: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    run = subprocess.run([sys.executable, str(Path(REPO_ROOT) / "run.py"), "task=studio", f"task.ckpt_path={ckpt}",
                          "task.token=''", f"hydra.run.dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("error: task.token=''") and "cannot be turned off" in lines[-1]
