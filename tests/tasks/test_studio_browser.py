"""condsynth studio in a real browser: headless Debian Chromium driven by playwright (executable_path set to the
system browser; see scripts/install_chromium.sh). Paints a stroke, picks cluster thumbnails, undoes, moves the LST
alpha slider; screenshots go to tests/artifacts/studio/ (ignored by git). A second test serves a page from two other
local origins and shows that its requests to the studio are refused."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.tasks._studio import lst_checkpoint, pix2pixhd_checkpoint, studio_config

pytest.importorskip("fastapi", reason="the studio extra is not installed (pip install -e .[studio])")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the studio extra)")

ARTIFACTS = Path(REPO_ROOT) / "tests" / "artifacts" / "studio"
SCRIPT = Path(REPO_ROOT) / "scripts" / "install_chromium.sh"
DISPLAY_SCALE = 6  # the page shows the 64x64 label map 384 px wide (studio.css)


def _browser_path() -> str:
    if os.environ.get("CONDSYNTH_SKIP_BROWSER"):
        pytest.skip("CONDSYNTH_SKIP_BROWSER is set")
    try:
        run = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"no Chromium: scripts/install_chromium.sh could not run ({err})")
    if run.returncode != 0:
        pytest.skip(f"no Chromium: scripts/install_chromium.sh: {run.stderr.strip()[-300:]}")
    return run.stdout.strip().splitlines()[-1]


def printed_url(studio, base: str) -> str:
    """The tokened URL that ``task=studio`` prints at start, for the server at ``base``."""
    from tasks.studio.serve import announce

    port = int(base.rsplit(":", 1)[1])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        announce(studio, "127.0.0.1", port)
    found = re.search(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+", out.getvalue())
    assert found, out.getvalue()
    return found.group(0)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("studio_browser")
    return {"pix2pixhd": pix2pixhd_checkpoint(folder), "lst": lst_checkpoint(folder)}


@pytest.fixture(scope="module")
def server(ckpts: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(the server's base URL, the tokened URL printed at start)."""
    from tasks.studio.app import create_app
    from tasks.studio.serve import BackgroundServer, build_studio

    studio = build_studio(studio_config([ckpts["pix2pixhd"], ckpts["lst"]]))
    srv = BackgroundServer(create_app(studio))
    yield srv.url, printed_url(studio, srv.url)
    srv.stop()


def csp_violations(page) -> list[str]:
    """Collects the page's Content-Security-Policy violations (an inline script or style the policy blocked)."""
    found: list[str] = []
    page.on("console", lambda msg: found.append(msg.text) if "Content Security Policy" in msg.text else None)
    return found


def _pixels(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"), np.float32)


def _id_map(page, url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.request.get(url).body())), dtype=np.int64)


def _png_file(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    base = rng.random((1, 1, 3)) * 255
    arr = np.clip(base + rng.normal(0, 40, (48, 48, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return str(path)


def _wait_version(page, selector: str, version: int) -> str:
    page.wait_for_function(f"() => +(document.querySelector('{selector}').dataset.version || 0) >= {version}",
                           timeout=60000)
    return page.get_attribute(selector, "src")


def test_studio_in_chromium(server: tuple[str, str], tmp_path: Path) -> None:
    browser_path = _browser_path()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        violations = csp_violations(page)
        try:
            _drive(page, *server, tmp_path)
        finally:
            page.screenshot(path=str(ARTIFACTS / "last.png"), full_page=True)
            browser.close()
    assert not violations, violations  # the page and the panels run under the studio's CSP
    print(f"\nstudio screenshots: {ARTIFACTS}")


def _visible(page, selector: str) -> bool:
    return page.locator(selector).is_visible()


def _drive(page, url: str, tokened: str, tmp_path: Path) -> None:
    # first visit: the scene's first image is held back a moment to see the page while the model works
    held: list = []
    page.route("**/api/pix2pixhd/state", lambda route: held.append(route))
    page.goto(tokened)  # sets the token cookie and redirects to /, the token out of the address bar
    assert page.url == f"{url}/"
    page.wait_for_selector("body[data-ready='1']", timeout=20000)
    page.wait_for_function("() => document.querySelector('#panel-pix2pixhd.active')", timeout=20000)
    deadline = time.monotonic() + 20
    while not held:
        assert time.monotonic() < deadline, "the page did not ask for its first scene"
        page.wait_for_timeout(50)
    assert _visible(page, "#p2p-image-waiting .spinner") and _visible(page, "#busy")  # working, it shows
    assert not _visible(page, "#p2p-image")  # no broken-image icon while there is no image
    assert "label map with the brush" in page.inner_text("#p2p-hint") and _visible(page, "#p2p-hint")
    page.screenshot(path=str(ARTIFACTS / "first_visit_loading.png"), full_page=True)
    held[0].continue_()
    page.unroute("**/api/pix2pixhd/state")

    # ... then scene 0 is open, with its generated image (no click on "open")
    before = _pixels(_wait_version(page, "#p2p-image", 1))
    page.wait_for_function("() => document.querySelector('#p2p-image').complete", timeout=20000)
    natural = page.evaluate("() => { const i = document.querySelector('#p2p-image'); "
                            "return [i.naturalWidth, i.naturalHeight]; }")
    assert natural[0] > 0 and natural[1] > 0, natural
    assert _visible(page, "#p2p-image") and _visible(page, "#p2p-label-canvas")
    assert not _visible(page, "#p2p-image-waiting") and not _visible(page, "#busy")
    assert page.input_value("#p2p-scene") == "0" and not _visible(page, "#message")
    page.screenshot(path=str(ARTIFACTS / "first_visit.png"), full_page=True)
    label0 = _id_map(page, f"{url}/api/pix2pixhd/download/label.png")
    inst0 = _id_map(page, f"{url}/api/pix2pixhd/download/inst.png")

    # paint a horizontal stroke of a class the scene does not use there
    row = 12
    new_class = next(c for c in range(7, 0, -1) if not (label0[row - 3:row + 4, 8:40] == c).any())
    page.select_option("#p2p-class", str(new_class))
    page.check("#p2p-tool-brush")
    box = page.locator("#p2p-label-canvas").bounding_box()
    y = box["y"] + (row + 0.5) * DISPLAY_SCALE
    page.mouse.move(box["x"] + 10.5 * DISPLAY_SCALE, y)
    page.mouse.down()
    for x in range(12, 38, 2):
        page.mouse.move(box["x"] + (x + 0.5) * DISPLAY_SCALE, y)
    page.mouse.up()
    after = _pixels(_wait_version(page, "#p2p-image", 2))
    page.screenshot(path=str(ARTIFACTS / "after_stroke.png"), full_page=True)
    label1 = _id_map(page, f"{url}/api/pix2pixhd/download/label.png")
    region = label1 != label0
    assert region.sum() > 40 and (label1[region] == new_class).all()
    assert page.inner_text("#p2p-latency").startswith("edit → image: ")
    diff = np.abs(after - before).mean(axis=2)
    inside, outside = diff[region].mean(), diff[~region].mean()
    assert inside > 5.0 and inside > 4 * outside, (inside, outside)
    assert np.median(diff[~region]) < 1.0  # most pixels outside the stroke keep their value

    # select an object instance away from the stroke and pick two of its cluster thumbnails
    objects = [i for i in np.unique(inst0) if i >= 1000 and not ((inst0 == i) & region).any()]
    assert objects, "the test scene has no object instance away from the stroke"
    iid = max(objects, key=lambda i: int((inst0 == i).sum()))
    ys, xs = np.nonzero(inst0 == iid)
    k = len(ys) // 2
    page.check("#p2p-tool-select")
    page.mouse.click(box["x"] + (xs[k] + 0.5) * DISPLAY_SCALE, box["y"] + (ys[k] + 0.5) * DISPLAY_SCALE)
    page.wait_for_selector("#p2p-thumbs img[data-index='1']", timeout=20000)
    assert page.locator("#p2p-thumbs img").count() == 3
    page.click("#p2p-thumbs img[data-index='0']")
    cluster0 = _pixels(_wait_version(page, "#p2p-image", 3))
    page.wait_for_selector("#p2p-thumbs img.chosen[data-index='0']", timeout=20000)
    page.click("#p2p-thumbs img[data-index='1']")
    cluster1 = _pixels(_wait_version(page, "#p2p-image", 4))
    page.wait_for_selector("#p2p-thumbs img.chosen[data-index='1']", timeout=20000)
    page.screenshot(path=str(ARTIFACTS / "after_cluster.png"), full_page=True)
    mask = inst0 == iid
    change = np.abs(cluster1 - cluster0).mean(axis=2)
    assert change[mask].mean() > 5.0 and change[mask].mean() > 3 * change[~mask].mean()

    # undo the second pick: back to cluster 0's image exactly
    page.click("#p2p-undo")
    undone = _pixels(_wait_version(page, "#p2p-image", 5))
    np.testing.assert_array_equal(undone, cluster0)

    # an error from the server: its one-line message in the page
    colour = tmp_path / "colour_label.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(colour)
    page.set_input_files("#p2p-label-file", str(colour))
    page.click("#p2p-upload")
    page.wait_for_selector("#message:not([hidden])", timeout=20000)
    message = page.inner_text("#message-text")
    assert message.startswith("error 400: ") and "single-channel PNG" in message and "\n" not in message, message
    box = page.locator("#message-text").bounding_box()
    assert box["height"] < 40, box  # one line
    page.screenshot(path=str(ARTIFACTS / "error.png"), full_page=True)
    page.click("#message-close")
    assert not _visible(page, "#message")

    # LST: a content and a style, then move the alpha slider
    page.click("#tab-lst")
    assert _visible(page, "#lst-hint") and page.inner_text("#lst-hint").startswith("Start by choosing a content")
    assert not _visible(page, "#lst-preview")  # no broken-image icon before the first preview
    page.set_input_files("#lst-content-file", _png_file(tmp_path / "content.png", 1))
    page.set_input_files("#lst-style-file", _png_file(tmp_path / "style.png", 2))
    full = _pixels(_wait_version(page, "#lst-preview", 1))
    slider = page.locator("#lst-alpha").bounding_box()
    page.mouse.click(slider["x"] + 0.1 * slider["width"], slider["y"] + slider["height"] / 2)
    assert float(page.input_value("#lst-alpha")) < 0.5
    page.wait_for_function("() => +document.querySelector('#lst-preview').dataset.version >= 2 && "
                           "!document.querySelector('#lst-fps').textContent.startsWith('preview: –')", timeout=20000)
    page.wait_for_timeout(300)  # a preview may still be in flight for a later slider value
    low = _pixels(page.get_attribute("#lst-preview", "src"))
    assert np.abs(low - full).mean() > 1.0
    page.screenshot(path=str(ARTIFACTS / "lst_alpha.png"), full_page=True)


# ------------------------------------------------------------------------------------------- other pages
ATTACK_PAGE = """<!doctype html>
<html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="load" method="post" action="STUDIO/api/models" enctype="text/plain" target="sink1">
  <input name='{"path": "LST", "x": "' value='"}'></form>
<form id="undo" method="post" action="STUDIO/api/pix2pixhd/undo" target="sink2"><input name="a" value="b"></form>
<script>
const S = "STUDIO", body = JSON.stringify({path: "LST"});
const png = Uint8Array.from(atob("LABEL"), (c) => c.charCodeAt(0));
const quietly = (f) => f().catch(() => null);
(async () => {
  // a no-cors "simple" request the browser sends without asking, with the cookies of its site
  await quietly(() => fetch(S + "/api/models", {method: "POST", mode: "no-cors", credentials: "include",
                                                headers: {"Content-Type": "text/plain"}, body}));
  // a JSON one: the browser asks first (preflight, OPTIONS)
  await quietly(() => fetch(S + "/api/models", {method: "POST", credentials: "include",
                                                headers: {"Content-Type": "application/json"}, body}));
  const form = new FormData();
  form.append("label", new Blob([png], {type: "image/png"}), "label.png");
  await quietly(() => fetch(S + "/api/pix2pixhd/upload", {method: "POST", mode: "no-cors", credentials: "include",
                                                          body: form}));
  await quietly(() => fetch(S + "/api/pix2pixhd/paint", {method: "POST", mode: "no-cors", credentials: "include",
    headers: {"Content-Type": "text/plain"}, body: JSON.stringify({class_id: 1, points: [[8, 8]], radius: 30})}));
  await quietly(() => fetch(S + "/api/pix2pixhd/undo", {method: "POST", mode: "no-cors", credentials: "include"}));
  let read = "refused";
  await quietly(async () => { read = await (await fetch(S + "/api/panels", {credentials: "include"})).text(); });
  const img = await new Promise((ok) => {
    const i = new Image(); i.onload = () => ok("loaded"); i.onerror = () => ok("refused");
    i.src = S + "/api/pix2pixhd/download/label.png";
  });
  document.getElementById("load").submit();
  document.getElementById("undo").submit();
  document.body.dataset.read = read; document.body.dataset.img = img; document.body.dataset.done = "1";
})();
</script></body></html>
"""
ATTACKS = {("POST", "/api/models"), ("OPTIONS", "/api/models"), ("POST", "/api/pix2pixhd/upload"),
           ("POST", "/api/pix2pixhd/paint"), ("POST", "/api/pix2pixhd/undo"), ("GET", "/api/panels"),
           ("GET", "/api/pix2pixhd/download/label.png")}


@contextlib.contextmanager
def attack_site(page_html: str) -> Iterator[int]:
    """A plain http.server on 127.0.0.1 (a free port) serving ``page_html`` at every path; yields its port."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            data = page_html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_pages_of_other_origins_are_refused(ckpts: dict[str, str], tmp_path: Path) -> None:
    """The user has the studio open (pix2pixHD only, a scene loaded, the token cookie set); a page of another local
    origin, in the same browser, sends it requests: from localhost:<port> (another site) and from
    127.0.0.1:<port> (the same site, another port: the browser sends the studio's SameSite cookies along). Every
    request is refused: no checkpoint is loaded, the scene and its history are unchanged, nothing is read."""
    from tasks.studio.app import create_app
    from tasks.studio.serve import BackgroundServer, build_studio
    from tests.tasks._studio import Recorder

    browser_path = _browser_path()
    studio = build_studio(studio_config([ckpts["pix2pixhd"]]))
    recorder = Recorder(create_app(studio))
    srv = BackgroundServer(recorder)
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64), 5, np.uint8)).save(buf, "PNG")  # a scene of class 5 only, to upload over
    label = base64.b64encode(buf.getvalue()).decode()
    html = ATTACK_PAGE.replace("STUDIO", srv.url).replace("LST", ckpts["lst"]).replace("LABEL", label)
    try:
        with attack_site(html) as port, playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            context = browser.new_context()
            page = context.new_page()
            page.goto(printed_url(studio, srv.url))
            page.wait_for_selector("body[data-ready='1']", timeout=20000)
            _wait_version(page, "#p2p-image", 1)  # scene 0, opened on the first visit
            label0 = _id_map(page, f"{srv.url}/api/pix2pixhd/download/label.png")
            state0 = page.request.get(f"{srv.url}/api/pix2pixhd/state").json()
            origins = (f"http://localhost:{port}", f"http://127.0.0.1:{port}")
            for origin in origins:
                other = context.new_page()
                other.goto(f"{origin}/")
                other.wait_for_selector("body[data-done='1']", timeout=20000)
                assert other.get_attribute("body", "data-read") == "refused"  # nothing read back
                assert other.get_attribute("body", "data-img") == "refused"
                deadline = time.monotonic() + 20  # until the server has seen all of them (the forms come last)
                while not ATTACKS <= {(m, path) for m, path, o, site, _ in recorder.seen
                                      if o == origin or (o is None and site in ("cross-site", "same-site"))}:
                    assert time.monotonic() < deadline, (origin, recorder.seen)
                    time.sleep(0.05)
                other.close()
            label1 = _id_map(page, f"{srv.url}/api/pix2pixhd/download/label.png")
            state1 = page.request.get(f"{srv.url}/api/pix2pixhd/state").json()
            browser.close()
    finally:
        srv.stop()
    foreign = [s for s in recorder.seen if s[2] in origins or s[3] in ("cross-site", "same-site")]
    answered = sorted({(method, path, origin or site, status) for method, path, origin, site, status in foreign})
    assert set(studio.panels) == {"pix2pixhd"}  # the LST checkpoint was not loaded
    assert (state1["name"], state1["can_undo"], state1["can_redo"]) == (state0["name"], False, False), answered
    np.testing.assert_array_equal(label1, label0, err_msg=str(answered))  # not uploaded over, not painted, not undone
    assert foreign and all(status in (401, 403) for *_, status in foreign), answered
    print(f"\nrefused {len(foreign)} requests of other origins: {answered}")
