"""condsynth studio in a real browser: headless Debian Chromium driven by playwright (executable_path set to the
system browser; see scripts/install_chromium.sh). Paints a stroke, picks cluster thumbnails, undoes, moves the LST
alpha slider; screenshots go to tests/artifacts/studio/ (ignored by git)."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import subprocess
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
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(the server's base URL, the tokened URL printed at start)."""
    from tasks.studio.app import create_app
    from tasks.studio.serve import BackgroundServer, build_studio

    folder = tmp_path_factory.mktemp("studio_browser")
    studio = build_studio(studio_config([pix2pixhd_checkpoint(folder), lst_checkpoint(folder)]))
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


def _drive(page, url: str, tokened: str, tmp_path: Path) -> None:
    page.goto(tokened)  # sets the token cookie and redirects to /, the token out of the address bar
    assert page.url == f"{url}/"
    page.wait_for_selector("body[data-ready='1']", timeout=20000)

    # open a test scene
    page.click("#p2p-scene-open")
    before = _pixels(_wait_version(page, "#p2p-image", 1))
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

    # LST: a content and a style, then move the alpha slider
    page.click("#tab-lst")
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
