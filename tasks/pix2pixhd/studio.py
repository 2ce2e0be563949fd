"""pix2pixHD's studio panel: interactive scene editing (Wang et al., CVPR 2018, §4 "interactive object editing").

A session holds a label map and an instance map (Cityscapes convention: an id >= 1000 is instance k of class
id // 1000, a smaller id is a "stuff" region of that class), each instance's chosen appearance and an undo history.
Edits: brush strokes and bucket fill with a class, a new instance drawn with the brush, and for a selected
instance: change its class, delete it (filled with the class around it), pick its appearance. Every edit returns
the colourised label map and the regenerated image.

Appearance (§3.4): each instance's feature is one of its class's K-means centres (``task=cluster_features``;
``cluster``), a centre drawn at random (``random``, the default, seeded per instance so that editing one instance
leaves the others as they were), or the encoder's features of the loaded real photo (``photo``). The official
repository released no editor; this follows the paper's description.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel
from scipy import ndimage

from datamodules.image_grids import colorize_labels, label_palette, to_unit_range
from datamodules.pix2pixhd import class_names
from datamodules.pix2pixhd.instances import INSTANCE_ID_MULTIPLIER, instance_class
from datamodules.pix2pixhd.label_folder import LabelFolderDataset
from datamodules.transforms import image_to_tensor
from tasks.builders import build_datamodule
from tasks.inference import inference_device, load_for_inference
from tasks.studio.errors import bad_request, conflict
from tasks.studio.images import ImageLimits, data_url, decode_image, id_map_png, tensor_png
from tasks.studio.panels import Panel

STYLE_KINDS = ("random", "cluster", "photo")


@dataclass
class Scene:
    """One session's scene: id maps [H, W] (int64), optional photo [1, 3, H, W] in [-1, 1], styles, history."""

    label: np.ndarray | None = None
    inst: np.ndarray | None = None
    photo: torch.Tensor | None = None
    name: str = ""
    styles: dict[int, dict[str, int | str]] = field(default_factory=dict)
    undo: list[tuple[np.ndarray, np.ndarray, dict]] = field(default_factory=list)
    redo: list[tuple[np.ndarray, np.ndarray, dict]] = field(default_factory=list)
    image: torch.Tensor | None = None


class Paint(BaseModel):
    class_id: int
    points: list[tuple[float, float]]
    radius: float = 2.0
    new_instance: bool = False


class Fill(BaseModel):
    class_id: int
    x: int
    y: int


class Point(BaseModel):
    x: int
    y: int


class InstanceClass(BaseModel):
    instance: int
    class_id: int


class InstanceRef(BaseModel):
    instance: int


class InstanceStyle(BaseModel):
    instance: int
    kind: str
    index: int = 0


class SceneIndex(BaseModel):
    index: int


def stroke_mask(shape: tuple[int, int], points: list[tuple[float, float]], radius: float) -> np.ndarray:
    """Pixels within ``radius`` of the polyline through ``points`` (x, y in pixels)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mask = np.zeros(shape, dtype=bool)
    pts = [(float(x), float(y)) for x, y in points]
    segments = list(zip(pts, pts[1:], strict=False)) or [(pts[0], pts[0])]
    for (x0, y0), (x1, y1) in segments:
        dx, dy = x1 - x0, y1 - y0
        t = ((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-9)
        t = np.clip(t, 0.0, 1.0)
        mask |= (xx - (x0 + t * dx)) ** 2 + (yy - (y0 + t * dy)) ** 2 <= radius * radius
    return mask


def new_instance_id(inst: np.ndarray, class_id: int) -> int:
    """The next free instance id of ``class_id`` (a stuff id, the class itself, for class 0)."""
    if class_id < 1:
        return class_id
    taken = inst[(inst >= INSTANCE_ID_MULTIPLIER) & (instance_class(inst) == class_id)]
    k = int((taken % INSTANCE_ID_MULTIPLIER).max()) + 1 if taken.size else 0
    if k >= INSTANCE_ID_MULTIPLIER:
        raise bad_request(f"class {class_id} already has {INSTANCE_ID_MULTIPLIER} instances")
    return class_id * INSTANCE_ID_MULTIPLIER + k


def most_common(values: np.ndarray) -> int:
    ids, counts = np.unique(values, return_counts=True)
    return int(ids[np.argmax(counts)])


class Pix2PixHDPanel(Panel):
    model = "pix2pixhd"
    title = "pix2pixHD scene editor"
    script = Path(__file__).with_name("studio.js")

    # ------------------------------------------------------------------------------------------- setup
    def load(self) -> None:
        cfg = self.checkpoint.cfg
        self.device = inference_device(cfg)
        self.module = load_for_inference(cfg, self.checkpoint.path).to(self.device)
        self.label_nc = int(self.module.label_nc)
        self.names = class_names(self.label_nc)
        self.palette = label_palette(self.label_nc)
        self.counts = self.module.feature_center_counts.cpu()
        opts = self.task.pix2pixhd
        self.feature_seed = int(opts.feature_seed)
        self.thumb_size = int(opts.thumb_size)
        self.max_history = int(self.task.max_history)
        self.image_limits = ImageLimits.from_task(self.task)
        self.max_stroke_points = int(self.task.max_stroke_points)
        self.datamodule = build_datamodule(cfg)
        self.scene_error = ""
        self.scenes: Any = None
        split = str(opts.scene_split)
        try:
            self.datamodule.setup(split)
            self.scenes = getattr(self.datamodule, f"{split}_set")
        except (ValueError, FileNotFoundError) as err:  # the page still works with uploads
            self.scene_error = f"no {split} scenes: {err}"
        self.num_scenes = min(len(self.scenes), int(opts.num_scenes)) if self.scenes is not None else 0

    def new_state(self) -> Scene:
        return Scene()

    def info(self) -> dict[str, Any]:
        rgb = (self.palette * 255).round().int().tolist()
        return {
            "classes": [{"id": i, "name": n, "color": "#" + "".join(f"{v:02x}" for v in rgb[i])} for i, n in
                        enumerate(self.names)],
            "clusters": [int(c) for c in self.counts],
            "num_scenes": self.num_scenes,
            "scene_error": self.scene_error,
            "use_features": bool(self.module.use_features),
        }

    # ------------------------------------------------------------------------------------------- scene
    def _require(self, st: Scene) -> None:
        if st.label is None:
            raise conflict("no scene is open: open a scene from the list or upload a label map first")

    def _set_scene(self, st: Scene, sample: dict[str, Any], name: str) -> dict[str, Any]:
        st.label = sample["label"][0].numpy().astype(np.int64)
        st.inst = sample["inst"][0].numpy().astype(np.int64)
        st.photo = sample["image"][None].to(self.device) if "image" in sample else None
        st.name, st.styles, st.undo, st.redo = name, {}, [], []
        return self.render(st)

    def open_scene(self, st: Scene, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_scenes:
            raise bad_request(f"scene {index} does not exist: pick one of 0..{self.num_scenes - 1}"
                              + (f" ({self.scene_error})" if self.scene_error else ""))
        return self._set_scene(st, self.scenes[index], f"scene{index:03d}")

    def upload(self, st: Scene, label: bytes, inst: bytes | None, photo: bytes | None) -> dict[str, Any]:
        """A label PNG (+ instance PNG, + photo), read through the dataset code (ids checked, resized to the
        model's size)."""
        for data, what in ((label, "label"), (inst, "instance")):
            if data is not None:
                img = decode_image(data, f"{what} map", self.image_limits)
                if img.mode not in ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N"):
                    raise bad_request(f"the {what} map has PIL mode {img.mode}: send a single-channel PNG of ids "
                                      f"(not a colour picture)")
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "label"))
            Path(tmp, "label", "upload.png").write_bytes(label)
            inst_dir = None
            if inst is not None:
                inst_dir = os.path.join(tmp, "inst")
                os.makedirs(inst_dir)
                Path(inst_dir, "upload.png").write_bytes(inst)
            try:
                ds = LabelFolderDataset(os.path.join(tmp, "label"), self.label_nc, inst_dir=inst_dir,
                                        transform=self.datamodule.eval_transform, check_files=False)
                sample = ds[0]
            except ValueError as err:  # name the uploads, not the temporary files
                label_path = os.path.join(tmp, "label", "upload.png")
                message = str(err).replace(f"label map {label_path}", label_path)
                message = message.replace(label_path, "the uploaded label map")
                message = message.replace(os.path.join(tmp, "inst", "upload.png"), "the uploaded instance map")
                raise bad_request(message) from None
        if photo is not None:
            sample["image"] = self._photo_tensor(photo, tuple(sample["label"].shape[-2:]))
        return self._set_scene(st, sample, "upload")

    def _photo_tensor(self, data: bytes, size: tuple[int, int]) -> torch.Tensor:
        img = decode_image(data, "photo", self.image_limits).convert("RGB")
        return F.interpolate(image_to_tensor(img)[None], size=size, mode="bilinear", align_corners=False,
                             antialias=True)[0]

    def set_photo(self, st: Scene, photo: bytes) -> dict[str, Any]:
        self._require(st)
        st.photo = self._photo_tensor(photo, st.label.shape)[None].to(self.device)
        return self.render(st)

    # ------------------------------------------------------------------------------------------- generation
    def _maps(self, st: Scene) -> tuple[torch.Tensor, torch.Tensor]:
        label = torch.from_numpy(st.label)[None, None].to(self.device)
        inst = torch.from_numpy(st.inst)[None, None].to(self.device)
        return label, inst

    def _feature_rows(self, st: Scene, label: torch.Tensor, inst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                        list[int], list[int]]:
        """One feature row per instance (sorted ids), each instance's pixel group, ids and classes."""
        m = self.module
        inverse, cls = m._instance_groups(label, inst)
        ids = torch.unique(inst).tolist()
        rows = torch.zeros(len(ids), m.feat_num, device=self.device)
        encoded = None
        for g, (iid, c) in enumerate(zip(ids, cls.tolist(), strict=True)):
            style = st.styles.get(iid, {"kind": "random", "seed": 0})
            count = int(self.counts[c])
            if style["kind"] == "photo" and st.photo is not None:
                if encoded is None:
                    encoded = m.netE(st.photo, inst)
                pixel = int(torch.argmax((inverse == g).int()))
                rows[g] = encoded[0].flatten(1)[:, pixel]
            elif count > 0:
                if style["kind"] == "cluster":
                    k = int(style["index"])
                else:
                    # seeded per (task seed, draw, instance): an edit elsewhere never changes this instance's draw
                    seed = hash((self.feature_seed, int(style.get("seed", 0)), iid)) & 0x7FFFFFFF
                    gen = torch.Generator().manual_seed(seed)
                    k = int(torch.randint(count, (1,), generator=gen))
                rows[g] = m.feature_centers[c, min(k, count - 1)]
        return rows, inverse, ids, cls.tolist()

    def _run_generator(self, label: torch.Tensor, inst: torch.Tensor, feats: torch.Tensor | None) -> torch.Tensor:
        m = self.module
        label_map = m.encode_label(label, inst)
        if feats is not None and feats.shape[0] != label_map.shape[0]:
            label_map = label_map.expand(feats.shape[0], -1, -1, -1)
        return to_unit_range(m.inference_generator()(m.generator_input(label_map, feats))).cpu()

    @torch.no_grad()
    def generate(self, st: Scene) -> torch.Tensor:
        label, inst = self._maps(st)
        self.module.check_size(label)
        feats = None
        if self.module.use_features:
            rows, inverse, _, _ = self._feature_rows(st, label, inst)
            feats = self.module._paint_instances(rows, inverse, inst.shape)
        return self._run_generator(label, inst, feats)[0]

    def render(self, st: Scene, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Regenerate; the colourised label map, the image and the generation time for the page."""
        start = time.perf_counter()
        st.image = self.generate(st)
        generate_ms = (time.perf_counter() - start) * 1000
        colours = colorize_labels(torch.from_numpy(st.label)[None, None], self.label_nc)[0]
        h, w = st.label.shape
        return {"name": st.name, "width": w, "height": h, "label": data_url(tensor_png(colours)),
                "image": data_url(tensor_png(st.image)), "generate_ms": round(generate_ms, 2),
                "can_undo": bool(st.undo), "can_redo": bool(st.redo), "has_photo": st.photo is not None,
                **(extra or {})}

    def current(self, st: Scene) -> dict[str, Any]:
        """The open scene; a session that has none yet (the page's first visit) gets scene 0 opened, so that the
        page starts with a label map and its generated image. Without dataset scenes: 409, upload a label map."""
        if st.label is None and self.num_scenes > 0:
            return self.open_scene(st, 0)
        if st.label is None:
            raise conflict("no scene is open and the dataset has no scenes"
                           + (f" ({self.scene_error})" if self.scene_error else "") + ": upload a label map")
        return self.render(st)

    # ------------------------------------------------------------------------------------------- edits
    def _check_class(self, class_id: int) -> int:
        if not 0 <= class_id < self.label_nc:
            raise bad_request(f"class {class_id} is outside the model's classes 0..{self.label_nc - 1} "
                              f"(label_nc={self.label_nc}): pick one of them")
        return class_id

    def _check_point(self, st: Scene, x: int, y: int) -> None:
        h, w = st.label.shape
        if not (0 <= x < w and 0 <= y < h):
            raise bad_request(f"point ({x}, {y}) is outside the {w}x{h} label map")

    def _mask(self, st: Scene, instance: int) -> np.ndarray:
        mask = st.inst == instance
        if not mask.any():
            raise bad_request(f"instance {instance} is not in the scene: select one on the label map")
        return mask

    def _snapshot(self, st: Scene) -> None:
        st.undo.append((st.label.copy(), st.inst.copy(), dict(st.styles)))
        del st.undo[: max(0, len(st.undo) - self.max_history)]
        st.redo.clear()

    def paint(self, st: Scene, body: Paint) -> dict[str, Any]:
        self._require(st)
        c = self._check_class(body.class_id)
        if not body.points:
            raise bad_request("a stroke needs at least one point")
        if len(body.points) > self.max_stroke_points:
            raise bad_request(f"a stroke of {len(body.points)} points is over task.max_stroke_points="
                              f"{self.max_stroke_points}: send it in shorter strokes")
        if not 0 < body.radius <= max(st.label.shape):
            raise bad_request(f"brush radius {body.radius} must be in (0, {max(st.label.shape)}]")
        mask = stroke_mask(st.label.shape, body.points, body.radius)
        self._snapshot(st)
        new_id = new_instance_id(st.inst, c) if body.new_instance else c
        st.label[mask], st.inst[mask] = c, new_id
        return self.render(st, {"instance": new_id if body.new_instance else None})

    def fill(self, st: Scene, body: Fill) -> dict[str, Any]:
        self._require(st)
        c = self._check_class(body.class_id)
        self._check_point(st, body.x, body.y)
        same = (st.label == st.label[body.y, body.x]) & (st.inst == st.inst[body.y, body.x])
        regions, _ = ndimage.label(same)
        mask = regions == regions[body.y, body.x]
        self._snapshot(st)
        st.label[mask], st.inst[mask] = c, c
        return self.render(st)

    def select(self, st: Scene, body: Point) -> dict[str, Any]:
        self._require(st)
        self._check_point(st, body.x, body.y)
        iid = int(st.inst[body.y, body.x])
        return self.instance_info(st, iid)

    @torch.no_grad()
    def instance_info(self, st: Scene, iid: int) -> dict[str, Any]:
        """Class, box, appearance and the cluster thumbnails of one instance (the scene regenerated with each of
        its class's centres, cropped to the instance)."""
        mask = self._mask(st, iid)
        c = most_common(st.label[mask])
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        count = int(self.counts[c]) if self.module.use_features else 0
        thumbs: list[str] = []
        if count:
            label, inst = self._maps(st)
            rows, inverse, ids, _ = self._feature_rows(st, label, inst)
            g = ids.index(iid)
            batch = rows.unsqueeze(0).repeat(count, 1, 1)
            batch[:, g] = self.module.feature_centers[c, :count]
            feats = torch.stack([self.module._paint_instances(r, inverse, inst.shape)[0] for r in batch])
            images = self._run_generator(label, inst, feats)
            pad = 2
            x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
            x1, y1 = min(mask.shape[1], box[2] + pad), min(mask.shape[0], box[3] + pad)
            crops = images[:, :, y0:y1, x0:x1]
            scale = self.thumb_size / max(y1 - y0, x1 - x0)
            size = (max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale)))
            crops = F.interpolate(crops, size=size, mode="nearest")
            thumbs = [data_url(tensor_png(t)) for t in crops]
        return {"instance": iid, "class_id": c, "class_name": self.names[c], "box": box,
                "is_object": iid >= INSTANCE_ID_MULTIPLIER, "style": st.styles.get(iid, {"kind": "random"}),
                "thumbnails": thumbs}

    def set_class(self, st: Scene, body: InstanceClass) -> dict[str, Any]:
        self._require(st)
        c = self._check_class(body.class_id)
        mask = self._mask(st, body.instance)
        self._snapshot(st)
        new_id = new_instance_id(st.inst, c) if body.instance >= INSTANCE_ID_MULTIPLIER else c
        st.label[mask], st.inst[mask] = c, new_id
        st.styles.pop(body.instance, None)
        return self.render(st, {"instance": new_id})

    def delete(self, st: Scene, body: InstanceRef) -> dict[str, Any]:
        self._require(st)
        mask = self._mask(st, body.instance)
        ring = ndimage.binary_dilation(mask) & ~mask
        if not ring.any():
            raise bad_request(f"instance {body.instance} covers the whole scene: there is nothing around it to fill "
                              f"with; paint or change its class instead")
        c = most_common(st.label[ring])
        around = most_common(st.inst[ring & (st.label == c)])
        self._snapshot(st)
        st.label[mask], st.inst[mask] = c, around
        st.styles.pop(body.instance, None)
        return self.render(st)

    def set_style(self, st: Scene, body: InstanceStyle) -> dict[str, Any]:
        self._require(st)
        mask = self._mask(st, body.instance)
        if body.kind not in STYLE_KINDS:
            raise bad_request(f"appearance '{body.kind}' is unknown: use one of {STYLE_KINDS}")
        c = most_common(st.label[mask])
        count = int(self.counts[c])
        if body.kind == "cluster" and not 0 <= body.index < count:
            raise bad_request(f"cluster {body.index} does not exist for class {c} ({self.names[c]}), which has "
                              f"{count} centres" + ("" if count else ": run task=cluster_features on the checkpoint"))
        if body.kind == "photo" and (st.photo is None or self.module.netE is None):
            raise conflict("no real photo is loaded (or the model has no encoder): open a dataset scene or upload "
                           "a photo first")
        self._snapshot(st)
        old = st.styles.get(body.instance, {})
        style: dict[str, int | str] = {"kind": body.kind}
        if body.kind == "cluster":
            style["index"] = body.index
        elif body.kind == "random":
            style["seed"] = int(old.get("seed", 0)) + 1  # a new draw each time
        st.styles[body.instance] = style
        return self.render(st, {"instance": body.instance})

    def undo(self, st: Scene) -> dict[str, Any]:
        return self._step(st, st.undo, st.redo, "undo")

    def redo(self, st: Scene) -> dict[str, Any]:
        return self._step(st, st.redo, st.undo, "redo")

    def _step(self, st: Scene, source: list, target: list, what: str) -> dict[str, Any]:
        self._require(st)
        if not source:
            raise conflict(f"nothing to {what}")
        target.append((st.label.copy(), st.inst.copy(), dict(st.styles)))
        st.label, st.inst, st.styles = source.pop()
        return self.render(st)

    def download(self, st: Scene, what: str) -> Response:
        self._require(st)
        if what == "label":
            data = id_map_png(st.label)
        elif what == "inst":
            data = id_map_png(st.inst)
        elif what == "image":
            data = tensor_png(st.image if st.image is not None else self.generate(st))
        else:
            raise bad_request(f"download '{what}' is unknown: use label, inst or image")
        name = f"{st.name or 'scene'}_{what}.png"
        return Response(data, media_type="image/png", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    # ------------------------------------------------------------------------------------------- routes
    def routes(self, router: APIRouter, studio: Any) -> None:
        m = self.model

        @router.post("/scene")
        async def scene(body: SceneIndex, request: Request) -> dict[str, Any]:
            return await studio.call(request, m, "open_scene", body.index)

        @router.post("/upload")
        async def upload(request: Request, label: Annotated[UploadFile, File()], inst: Annotated[UploadFile | None, File()] = None,
                         photo: Annotated[UploadFile | None, File()] = None) -> dict[str, Any]:
            data = await studio.read_upload(label, "label")
            inst_data = await studio.read_upload(inst, "inst", required=False)
            photo_data = await studio.read_upload(photo, "photo", required=False)
            return await studio.call(request, m, "upload", data, inst_data, photo_data)

        @router.post("/photo")
        async def photo(request: Request, photo: Annotated[UploadFile, File()]) -> dict[str, Any]:
            return await studio.call(request, m, "set_photo", await studio.read_upload(photo, "photo"))

        @router.get("/state")
        async def state(request: Request) -> dict[str, Any]:
            return await studio.call(request, m, "current")

        for path, method, model_cls in (("/paint", "paint", Paint), ("/fill", "fill", Fill),
                                        ("/select", "select", Point), ("/instance/class", "set_class", InstanceClass),
                                        ("/instance/delete", "delete", InstanceRef),
                                        ("/instance/style", "set_style", InstanceStyle)):
            router.add_api_route(path, _edit_endpoint(studio, m, method, model_cls), methods=["POST"])

        @router.post("/undo")
        async def undo(request: Request) -> dict[str, Any]:
            return await studio.call(request, m, "undo")

        @router.post("/redo")
        async def redo(request: Request) -> dict[str, Any]:
            return await studio.call(request, m, "redo")

        @router.get("/download/{what}.png")
        async def download(what: str, request: Request) -> Response:
            return await studio.call(request, m, "download", what)


def _edit_endpoint(studio: Any, model: str, method: str, body_cls: type[BaseModel]) -> Any:
    async def endpoint(body: body_cls, request: Request) -> dict[str, Any]:  # type: ignore[valid-type]
        return await studio.call(request, model, method, body)

    endpoint.__name__ = method
    endpoint.__annotations__ = {"body": body_cls, "request": Request, "return": dict[str, Any]}  # real types
    return endpoint

