"""condsynth studio's HTTP API with FastAPI's TestClient: every endpoint and every bad-input case, on tiny
checkpoints built here (tests/tasks/_studio.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tasks._studio import (
    N_CLUSTERS,
    PIX2PIXHD_SIZE,
    lst_checkpoint,
    pix2pixhd_checkpoint,
    studio_client,
    studio_config,
)

pytest.importorskip("fastapi", reason="the studio extra is not installed (pip install -e .[studio])")
pytest.importorskip("httpx", reason="the studio extra is not installed (pip install -e .[studio])")
from fastapi.testclient import TestClient  # noqa: E402

from datamodules.pix2pixhd.label_folder import LabelFolderDataset  # noqa: E402
from lightning_modules.stages import StageError  # noqa: E402
from tasks.pix2pixhd.studio import stroke_mask  # noqa: E402
from tasks.studio.serve import build_studio  # noqa: E402

P2P = "/api/pix2pixhd"
LST = "/api/lst"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("studio_api")
    return {"pix2pixhd": pix2pixhd_checkpoint(folder), "lst": lst_checkpoint(folder),
            "lst_decoder": lst_checkpoint(folder, "decoder")}


@pytest.fixture(scope="module")
def studio(ckpts: dict[str, str]):
    return build_studio(studio_config([ckpts["pix2pixhd"], ckpts["lst"]]))


@pytest.fixture
def client(studio) -> TestClient:
    return studio_client(studio)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def pixels(data_url: str) -> np.ndarray:
    import base64

    raw = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.float32)


def id_map(client: TestClient, what: str) -> np.ndarray:
    res = client.get(f"{P2P}/download/{what}.png")
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(res.content)), dtype=np.int64)


def two_object_scene() -> tuple[np.ndarray, np.ndarray]:
    """Ground (class 1) with a car (class 3, instance 3000) and a second car (3001)."""
    n = PIX2PIXHD_SIZE
    label = np.ones((n, n), np.uint8)
    inst = np.ones((n, n), np.uint16)
    label[10:30, 10:30], inst[10:30, 10:30] = 3, 3000
    label[40:56, 36:60], inst[40:56, 36:60] = 3, 3001
    return label, inst


def upload_scene(client: TestClient, with_photo: bool = False) -> dict:
    label, inst = two_object_scene()
    files = {"label": ("l.png", png(label), "image/png"), "inst": ("i.png", png(inst), "image/png")}
    if with_photo:
        rng = np.random.default_rng(0)
        files["photo"] = ("p.png", png(rng.integers(0, 255, (PIX2PIXHD_SIZE, PIX2PIXHD_SIZE, 3), np.uint8)), "image/png")
    res = client.post(f"{P2P}/upload", files=files)
    assert res.status_code == 200, res.text
    return res.json()


# ------------------------------------------------------------------------------------------- server
def test_health_page_panels_and_scripts(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["models"] == {"pix2pixhd": "global", "lst": "transform"}
    assert "<title>condsynth studio</title>" in client.get("/").text
    assert client.get("/static/studio.js").status_code == 200
    panels = {p["model"]: p for p in client.get("/api/panels").json()}
    assert set(panels) == {"pix2pixhd", "lst"}
    assert panels["pix2pixhd"]["info"]["clusters"] == [N_CLUSTERS] * 8
    assert [c["name"] for c in panels["pix2pixhd"]["info"]["classes"][:3]] == ["sky", "ground", "building"]
    assert panels["lst"]["info"]["sides"] == [32, 64]
    assert "StudioPanels.pix2pixhd" in client.get("/panel/pix2pixhd.js").text
    missing = client.get("/panel/edn.js")
    assert missing.status_code == 404 and "no edn checkpoint is loaded" in missing.json()["error"]


def test_sessions_are_separate(studio) -> None:
    a, b = studio_client(studio), studio_client(studio)
    upload_scene(a)
    assert b.post(f"{P2P}/undo").status_code == 409  # b has no scene
    upload_scene(b)
    a.post(f"{P2P}/paint", json={"class_id": 5, "points": [[5, 5]], "radius": 3})
    assert (id_map(a, "label") == 5).any() and not (id_map(b, "label") == 5).any()


def test_oversized_corrupt_and_non_image_uploads(client: TestClient) -> None:
    big = client.post(f"{LST}/content", files={"image": ("big.png", b"\x89PNG" + b"0" * 300_000, "image/png")})
    assert big.status_code == 413 and "task.max_upload_bytes" in big.json()["error"]
    near = client.post(f"{LST}/content", files={"image": ("near.png", b"0" * 200_001, "image/png")})
    assert near.status_code == 413
    text = client.post(f"{LST}/content", files={"image": ("notes.txt", b"hello", "text/plain")})
    assert text.status_code == 400 and "not a readable image" in text.json()["error"]
    corrupt = png(np.zeros((32, 32, 3), np.uint8))[:60]
    res = client.post(f"{P2P}/upload", files={"label": ("cut.png", corrupt, "image/png")})
    assert res.status_code == 400 and "not a readable image" in res.json()["error"]
    empty = client.post(f"{LST}/style", files={"image": ("e.png", b"", "image/png")})
    assert empty.status_code == 400
    assert client.get("/health").json()["status"] == "ok"  # still serving


def test_generation_error_is_a_500_and_the_next_request_works(client: TestClient, studio, monkeypatch) -> None:
    upload_scene(client)
    panel = studio.panels["pix2pixhd"]

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(panel, "_run_generator", broken)
    res = client.post(f"{P2P}/paint", json={"class_id": 2, "points": [[5, 5]], "radius": 2})
    assert res.status_code == 500 and "out of memory (simulated)" in res.json()["error"]
    monkeypatch.undo()
    assert client.post(f"{P2P}/paint", json={"class_id": 2, "points": [[5, 5]], "radius": 2}).status_code == 200


def test_wrong_model_or_stage_checkpoint_is_a_4xx(client: TestClient, ckpts: dict[str, str], tmp_path) -> None:
    res = client.post("/api/models", json={"path": ckpts["lst_decoder"]})
    assert res.status_code == 400 and "stage 'decoder'" in res.json()["error"]
    foreign = Path(ckpts["lst"]).parent / "x2face.ckpt"  # a folder the studio may load from
    torch.save({"state_dict": {}, "condsynth": {"model": "x2face", "stage": "embedding"}}, foreign)
    res = client.post("/api/models", json={"path": str(foreign)})
    assert res.status_code == 400 and "'x2face' checkpoint" in res.json()["error"]
    res = client.post("/api/models", json={"path": str(tmp_path / "missing.ckpt")})
    assert res.status_code == 400
    assert client.get("/health").json()["models"] == {"pix2pixhd": "global", "lst": "transform"}


def test_load_a_checkpoint_at_run_time(ckpts: dict[str, str]) -> None:
    studio = build_studio(studio_config([ckpts["lst"]]))
    client = studio_client(studio)
    assert client.post(f"{P2P}/scene", json={"index": 0}).status_code == 404
    assert client.post("/api/models", json={"path": ckpts["pix2pixhd"]}).status_code == 200
    assert client.post(f"{P2P}/scene", json={"index": 0}).status_code == 200


def test_startup_rejects_a_decoder_checkpoint(ckpts: dict[str, str]) -> None:
    with pytest.raises(StageError, match="stage 'decoder'"):
        build_studio(studio_config([ckpts["lst_decoder"]]))
    with pytest.raises(ValueError, match="two lst checkpoints"):
        build_studio(studio_config([ckpts["lst"], ckpts["lst"]]))


# ------------------------------------------------------------------------------------------- pix2pixHD
def test_open_scene_and_bad_index(client: TestClient, studio) -> None:
    res = client.post(f"{P2P}/scene", json={"index": 1})
    assert res.status_code == 200
    data = res.json()
    assert (data["width"], data["height"]) == (PIX2PIXHD_SIZE, PIX2PIXHD_SIZE) and data["has_photo"]
    sample = studio.panels["pix2pixhd"].scenes[1]
    np.testing.assert_array_equal(id_map(client, "label"), sample["label"][0].numpy())
    assert client.post(f"{P2P}/scene", json={"index": 99}).status_code == 400
    assert client.get(f"{P2P}/state").json()["name"] == "scene001"


def test_edits_need_a_scene(client: TestClient) -> None:
    for path, body in (("/paint", {"class_id": 1, "points": [[1, 1]]}), ("/fill", {"class_id": 1, "x": 0, "y": 0}),
                       ("/select", {"x": 0, "y": 0}), ("/undo", None)):
        res = client.post(P2P + path, json=body)
        assert res.status_code == 409 and "no scene is open" in res.json()["error"]


def test_first_visit_opens_scene_zero(client: TestClient, studio, monkeypatch) -> None:
    """GET /state on a session's first visit opens scene 0 (the page starts with a label map and its image); later
    it returns the session's scene as edited; with no dataset scenes it is a 409 saying to upload a label map."""
    first = client.get(f"{P2P}/state")
    assert first.status_code == 200 and first.json()["name"] == "scene000"
    assert pixels(first.json()["image"]).shape == (PIX2PIXHD_SIZE, PIX2PIXHD_SIZE, 3)
    np.testing.assert_array_equal(id_map(client, "label"), studio.panels["pix2pixhd"].scenes[0]["label"][0].numpy())
    client.post(f"{P2P}/paint", json={"class_id": 5, "points": [[5, 5]], "radius": 3})
    again = client.get(f"{P2P}/state").json()
    assert again["can_undo"] and (id_map(client, "label")[5, 5] == 5)  # the edit is kept, scene 0 not reopened
    monkeypatch.setattr(studio.panels["pix2pixhd"], "num_scenes", 0)
    other = studio_client(studio)
    res = other.get(f"{P2P}/state")
    assert res.status_code == 409 and res.json()["error"].endswith("upload a label map")
    assert "\n" not in res.json()["error"]
    assert client.get(f"{P2P}/state").json()["can_undo"]  # an open scene is still served


def test_upload_bad_labels(client: TestClient) -> None:
    res = client.post(f"{P2P}/upload", files={"label": ("l.png", png(np.full((16, 16), 9, np.uint8)), "image/png")})
    assert res.status_code == 400 and "id 9 outside [0, label_nc=8)" in res.json()["error"]
    assert res.json()["error"].startswith("the uploaded label map contains id 9")
    files = {"label": ("l.png", png(np.ones((16, 16), np.uint8)), "image/png"),
             "inst": ("i.png", png(np.ones((8, 16), np.uint8)), "image/png")}
    sizes = client.post(f"{P2P}/upload", files=files)
    assert sizes.status_code == 400 and "the uploaded instance map is 8x16" in sizes.json()["error"]
    colour = client.post(f"{P2P}/upload", files={"label": ("c.png", png(np.zeros((16, 16, 3), np.uint8)), "image/png")})
    assert colour.status_code == 400 and "single-channel" in colour.json()["error"]
    assert client.post(f"{P2P}/upload").status_code == 422  # no file at all


def test_paint_changes_exactly_the_stroke_and_regenerates(client: TestClient) -> None:
    before = upload_scene(client)
    points = [[40.0, 8.0], [60.0, 12.0]]
    res = client.post(f"{P2P}/paint", json={"class_id": 6, "points": points, "radius": 2.5})
    assert res.status_code == 200
    after = res.json()
    label0, _ = two_object_scene()
    expected = label0.astype(np.int64)
    mask = stroke_mask(expected.shape, [tuple(p) for p in points], 2.5)
    expected[mask] = 6
    np.testing.assert_array_equal(id_map(client, "label"), expected)
    assert (id_map(client, "inst")[mask] == 6).all()
    assert np.abs(pixels(after["image"]) - pixels(before["image"])).max() > 0
    assert after["generate_ms"] > 0 and after["can_undo"]
    bad = client.post(f"{P2P}/paint", json={"class_id": 8, "points": [[1, 1]], "radius": 2})
    assert bad.status_code == 400 and "outside the model's classes 0..7" in bad.json()["error"]
    assert client.post(f"{P2P}/paint", json={"class_id": -1, "points": [[1, 1]]}).status_code == 400
    assert client.post(f"{P2P}/paint", json={"class_id": 1, "points": []}).status_code == 400
    assert client.post(f"{P2P}/paint", json={"class_id": 1, "points": [[1, 1]], "radius": 0}).status_code == 400


def test_a_stroke_has_at_most_max_stroke_points(client: TestClient, studio) -> None:
    upload_scene(client)
    cap = int(studio.task.max_stroke_points)
    points = [[i % PIX2PIXHD_SIZE, (i // PIX2PIXHD_SIZE) % PIX2PIXHD_SIZE] for i in range(cap + 1)]
    res = client.post(f"{P2P}/paint", json={"class_id": 2, "points": points, "radius": 1})
    assert res.status_code == 400 and f"task.max_stroke_points={cap}" in res.json()["error"]
    assert not client.get(f"{P2P}/state").json()["can_undo"]  # nothing was painted
    assert client.post(f"{P2P}/paint", json={"class_id": 2, "points": points[:8], "radius": 1}).status_code == 200


def test_a_long_thin_label_map_is_refused(client: TestClient) -> None:
    strip = png(np.zeros((1, 2048), np.uint8))  # 1x2048: its side passes task.max_image_side, its ratio does not
    res = client.post(f"{P2P}/upload", files={"label": ("strip.png", strip, "image/png")})
    assert res.status_code == 400 and "task.max_aspect_ratio" in res.json()["error"]


def test_new_instance_stroke_gets_a_fresh_id(client: TestClient) -> None:
    upload_scene(client)
    res = client.post(f"{P2P}/paint", json={"class_id": 3, "points": [[5, 50], [20, 50]], "radius": 2,
                                           "new_instance": True})
    assert res.json()["instance"] == 3002  # 3000 and 3001 exist
    assert (id_map(client, "inst") == 3002).sum() > 20


def test_fill_takes_the_connected_region(client: TestClient) -> None:
    upload_scene(client)
    res = client.post(f"{P2P}/fill", json={"class_id": 4, "x": 15, "y": 15})
    assert res.status_code == 200
    label = id_map(client, "label")
    assert (label[10:30, 10:30] == 4).all() and (label[40:56, 36:60] == 3).all() and (label == 4).sum() == 400
    assert client.post(f"{P2P}/fill", json={"class_id": 4, "x": 64, "y": 0}).status_code == 400
    assert client.post(f"{P2P}/fill", json={"class_id": 11, "x": 1, "y": 1}).status_code == 400


def test_select_change_class_and_delete(client: TestClient) -> None:
    upload_scene(client)
    sel = client.post(f"{P2P}/select", json={"x": 12, "y": 20}).json()
    assert (sel["instance"], sel["class_id"], sel["class_name"], sel["box"]) == (3000, 3, "car", [10, 10, 30, 30])
    assert sel["is_object"] and len(sel["thumbnails"]) == N_CLUSTERS
    res = client.post(f"{P2P}/instance/class", json={"instance": 3000, "class_id": 5}).json()
    assert res["instance"] == 5000
    label, inst = id_map(client, "label"), id_map(client, "inst")
    assert (label[10:30, 10:30] == 5).all() and (inst[10:30, 10:30] == 5000).all()
    assert client.post(f"{P2P}/instance/class", json={"instance": 3000, "class_id": 5}).status_code == 400  # gone
    assert client.post(f"{P2P}/instance/class", json={"instance": 5000, "class_id": 99}).status_code == 400
    client.post(f"{P2P}/instance/delete", json={"instance": 3001})
    label, inst = id_map(client, "label"), id_map(client, "inst")
    assert (label[40:56, 36:60] == 1).all() and (inst[40:56, 36:60] == 1).all()  # the ground around it
    assert client.post(f"{P2P}/instance/delete", json={"instance": 3001}).status_code == 400


def test_cluster_style_changes_the_instance_and_undo_redo(client: TestClient) -> None:
    upload_scene(client)
    first = client.post(f"{P2P}/instance/style", json={"instance": 3000, "kind": "cluster", "index": 0}).json()
    second = client.post(f"{P2P}/instance/style", json={"instance": 3000, "kind": "cluster", "index": 2}).json()
    diff = np.abs(pixels(second["image"]) - pixels(first["image"])).mean(axis=2)
    car = two_object_scene()[1] == 3000
    assert diff[car].mean() > 3 * diff[~car].mean() and diff[car].mean() > 1.0
    sel = client.post(f"{P2P}/select", json={"x": 15, "y": 15}).json()
    assert sel["style"] == {"kind": "cluster", "index": 2}
    undone = client.post(f"{P2P}/undo").json()
    np.testing.assert_array_equal(pixels(undone["image"]), pixels(first["image"]))
    redone = client.post(f"{P2P}/redo").json()
    np.testing.assert_array_equal(pixels(redone["image"]), pixels(second["image"]))
    assert client.post(f"{P2P}/redo").status_code == 409
    bad = client.post(f"{P2P}/instance/style", json={"instance": 3000, "kind": "cluster", "index": N_CLUSTERS})
    assert bad.status_code == 400 and f"has {N_CLUSTERS} centres" in bad.json()["error"]
    assert client.post(f"{P2P}/instance/style", json={"instance": 3000, "kind": "mood"}).status_code == 400
    assert client.post(f"{P2P}/instance/style", json={"instance": 3000, "kind": "photo"}).status_code == 409
    r1 = client.post(f"{P2P}/instance/style", json={"instance": 3000, "kind": "random"})
    assert r1.status_code == 200


def test_photo_features(client: TestClient) -> None:
    upload_scene(client, with_photo=True)
    res = client.post(f"{P2P}/instance/style", json={"instance": 3000, "kind": "photo"})
    assert res.status_code == 200
    rgb = png(np.full((20, 20, 3), 200, np.uint8))
    assert client.post(f"{P2P}/photo", files={"photo": ("p.png", rgb, "image/png")}).json()["has_photo"]


def test_downloads_load_back_through_the_dataset_code(client: TestClient, studio, tmp_path: Path) -> None:
    upload_scene(client)
    client.post(f"{P2P}/paint", json={"class_id": 7, "points": [[2, 60], [60, 60]], "radius": 1.5,
                                      "new_instance": True})
    for what, folder in (("label", "label"), ("inst", "inst")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "scene.png").write_bytes(client.get(f"{P2P}/download/{what}.png").content)
    ds = LabelFolderDataset(str(tmp_path / "label"), 8, inst_dir=str(tmp_path / "inst"))
    sample = ds[0]
    np.testing.assert_array_equal(sample["label"][0].numpy(), id_map(client, "label"))
    np.testing.assert_array_equal(sample["inst"][0].numpy(), id_map(client, "inst"))
    assert (sample["inst"][0].numpy() == 7000).any()
    image = client.get(f"{P2P}/download/image.png")
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (64, 64)
    assert client.get(f"{P2P}/download/other.png").status_code == 400


# ------------------------------------------------------------------------------------------- LST
def rgb(seed: int, size: int = 40) -> bytes:
    return png(np.random.default_rng(seed).integers(0, 255, (size, size + 8, 3), np.uint8))


def test_lst_preview_matches_the_stylizer_and_caches_style_codes(client: TestClient, studio, monkeypatch) -> None:
    from tasks.lst.studio import resize_short
    from tasks.lst.stylize import stylize_one
    from tasks.studio.images import ImageLimits, decode_image, rgb_tensor

    panel = studio.panels["lst"]
    assert client.post(f"{LST}/preview", json={}).status_code == 409  # no content yet
    client.post(f"{LST}/content", files={"image": ("c.png", rgb(0), "image/png")})
    assert client.post(f"{LST}/preview", json={}).status_code == 409  # no style yet
    calls = []
    original = panel.stylizer.style_code
    monkeypatch.setattr(panel.stylizer, "style_code", lambda x: calls.append(1) or original(x))
    summary = client.post(f"{LST}/style", files={"image": ("s.png", rgb(1), "image/png")}).json()
    assert [s["name"] for s in summary["styles"]] == ["s.png"]
    full = client.post(f"{LST}/preview", json={"alpha": 1.0, "side": 32}).json()
    half = client.post(f"{LST}/preview", json={"alpha": 0.3, "side": 32}).json()
    big = client.post(f"{LST}/preview", json={"alpha": 1.0, "side": 64}).json()
    assert calls == [1]  # one style code for every preview
    assert (full["height"], full["width"], big["height"]) == (32, 38, 64)
    limits = ImageLimits(4096, 4096 ** 2, 8)
    content = resize_short(rgb_tensor(decode_image(rgb(0), "c", limits)), 32)
    style = resize_short(rgb_tensor(decode_image(rgb(1), "s", limits)), 32)
    photo = client.post(f"{LST}/preview", json={"alpha": 0.3, "side": 32, "photoreal": True}).json()
    code = panel.stylizer.style_code(style)
    for got, alpha, photoreal in ((full, 1.0, None), (half, 0.3, None), (photo, 0.3, panel.filter_args)):
        with torch.no_grad():
            want = stylize_one(panel.stylizer, content, code, alpha, photoreal)[0]
        want = (want.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8).astype(np.float32)
        assert np.abs(pixels(got["image"]) - want).max() <= 1.0, (alpha, photoreal)
    assert np.abs(pixels(full["image"]) - pixels(half["image"])).mean() > 0.5


def test_lst_mixing_and_bad_settings(client: TestClient) -> None:
    client.post(f"{LST}/content", files={"image": ("c.png", rgb(0), "image/png")})
    client.post(f"{LST}/style", files={"image": ("a.png", rgb(1), "image/png")})
    client.post(f"{LST}/style", files={"image": ("b.png", rgb(2), "image/png")})
    only_a = client.post(f"{LST}/preview", json={"weights": [1, 0]}).json()
    only_b = client.post(f"{LST}/preview", json={"weights": [0, 1]}).json()
    mixed = client.post(f"{LST}/preview", json={"weights": [1, 1]}).json()
    a, b, m = pixels(only_a["image"]), pixels(only_b["image"]), pixels(mixed["image"])
    assert np.abs(a - b).mean() > 0.5 and np.abs(m - a).mean() > 0.1 and np.abs(m - b).mean() > 0.1
    for body in ({"weights": [1]}, {"weights": [-1, 2]}, {"weights": [0, 0]}, {"alpha": 1.5}, {"alpha": -0.1},
                 {"side": 100}):
        res = client.post(f"{LST}/preview", json=body)
        assert res.status_code == 400, body
    assert client.post(f"{LST}/preview", json={"alpha": "high"}).status_code == 422
    after = client.delete(f"{LST}/style/0").json()
    assert [s["name"] for s in after["styles"]] == ["b.png"]
    assert client.delete(f"{LST}/style/5").status_code == 400
    for i in range(3):
        assert client.post(f"{LST}/style", files={"image": (f"{i}.png", rgb(i), "image/png")}).status_code == 200
    full = client.post(f"{LST}/style", files={"image": ("x.png", rgb(9), "image/png")})
    assert full.status_code == 400 and "task.lst.max_styles" in full.json()["error"]


def test_lst_webcam_frame(client: TestClient) -> None:
    client.post(f"{LST}/style", files={"image": ("a.png", rgb(1), "image/png")})
    res = client.post(f"{LST}/frame?alpha=0.5&side=32", files={"image": ("f.jpg", rgb(3), "image/png")})
    assert res.status_code == 200 and res.json()["height"] == 32


# ------------------------------------------------------------------------------------------- command line
def _run_py(*args: str) -> list[str]:
    import sys

    from tests.conftest import REPO_ROOT

    return [sys.executable, str(Path(REPO_ROOT) / "run.py"), *args]


@pytest.mark.slow
def test_command_line_serves_and_stops_on_sigterm(ckpts: dict[str, str], tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "test-token-for-the-command-line"
    proc = subprocess.Popen(_run_py("task=studio", f"task.ckpt_path=[{ckpts['pix2pixhd']},{ckpts['lst']}]",
                                    f"task.port={port}", f"task.token={token}", "task.lst.preview_sides=[32]", "task.lst.style_side=32",
                                    f"hydra.run.dir={tmp_path / 'run'}"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers={"X-Condsynth-Token": token})
                with urllib.request.urlopen(request, timeout=2) as res:
                    health = res.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[0][-2000:]
                assert time.monotonic() < deadline, "the studio did not answer /health within 120 s"
                time.sleep(0.5)
        assert '"pix2pixhd":"global"' in health and '"lst":"transform"' in health
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out[-2000:]
        assert f"http://127.0.0.1:{port}/?token={token}" in out
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_command_line_decoder_checkpoint_is_a_one_line_error(ckpts: dict[str, str], tmp_path: Path) -> None:
    import subprocess

    run = subprocess.run(_run_py("task=studio", f"task.ckpt_path={ckpts['lst_decoder']}",
                                 f"hydra.run.dir={tmp_path / 'run'}"), capture_output=True, text=True, timeout=180)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "stage 'decoder'" in lines[-1]
