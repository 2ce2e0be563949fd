"""Linear Style Transfer's studio panel (Li et al., CVPR 2019): a content image, one or more styles, an alpha
slider, a mixing weight per style and the photo-real filter, with a live preview.

Each style's code (``T_s`` and its mean, :meth:`networks.lst.LinearStylizer.style_code`) is computed once, when
the style is uploaded, and cached in the session; a preview only encodes the content, applies the mixed code
(:meth:`LinearStylizer.mix_codes`) and decodes. The content's features are cached per preview size as well, so
moving a slider costs the transform and the decoder only. The photo-real toggle is the guided filter of
``tasks/lst/photoreal.py`` (a stand-in for the paper's learned propagation network). The official demo is a webcam
script; the page can send webcam frames as the content (``/frame``) where the browser allows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from fastapi import APIRouter, File, Request, UploadFile
from pydantic import BaseModel

from networks.lst import LinearStylizer, StyleCode
from tasks.inference import inference_device
from tasks.lst.photoreal import check_guided_filter_args, guided_filter
from tasks.lst.stylize import check_alpha, load_stylizer, min_image_side
from tasks.studio.errors import bad_request, conflict
from tasks.studio.images import ImageLimits, data_url, decode_image, rgb_tensor, tensor_png
from tasks.studio.panels import Panel

THUMB_SIDE = 64  # the page's thumbnails of the content and the styles (pixels, shorter side)


@dataclass
class StyleEntry:
    name: str
    code: StyleCode
    thumb: str


@dataclass
class LSTState:
    content: torch.Tensor | None = None          # [1, 3, H, W] in [0, 1], as uploaded
    content_name: str = ""
    content_thumb: str = ""
    resized: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # side -> (image, feat)
    styles: list[StyleEntry] = field(default_factory=list)


class Preview(BaseModel):
    alpha: float = 1.0
    weights: list[float] | None = None
    photoreal: bool = False
    side: int | None = None


def resize_short(img: torch.Tensor, side: int, limits: ImageLimits | None = None, name: str = "image") -> torch.Tensor:
    """[1, 3, H, W] resized (bicubic, antialiased) so that its shorter side is ``side``; with ``limits``, a 400 before
    any pixel is computed when the resized image would be over them (a 1x2048 strip at a 256-pixel shorter side is
    256x524288 pixels)."""
    h, w = img.shape[-2:]
    s = side / min(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    if limits is not None:
        limits.check(size[1], size[0], name, resized=True)
    if size == (h, w):
        return img
    return F.interpolate(img, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


class LSTPanel(Panel):
    model = "lst"
    title = "Linear Style Transfer"
    script = Path(__file__).with_name("studio.js")

    def load(self) -> None:
        cfg = self.checkpoint.cfg
        self.device = inference_device(cfg)
        self.stylizer: LinearStylizer = load_stylizer(cfg, self.device)
        opts = self.task.lst
        self.sides = [int(s) for s in opts.preview_sides]
        self.style_side = int(opts.style_side)
        self.max_styles = int(opts.max_styles)
        self.filter_args = check_guided_filter_args(opts.guided_filter.radius, opts.guided_filter.eps)
        self.image_limits = ImageLimits.from_task(self.task)
        self.min_side = min_image_side(str(cfg.model.get("level", "r41")))
        for side in [*self.sides, self.style_side]:
            if side < self.min_side:
                raise ValueError(f"task.lst sizes {self.sides} / style_side={self.style_side} must be >= "
                                 f"{self.min_side} pixels for model.level={cfg.model.get('level')}")

    def new_state(self) -> LSTState:
        return LSTState()

    def info(self) -> dict[str, Any]:
        return {"sides": self.sides, "max_styles": self.max_styles, "level": str(self.checkpoint.cfg.model.level)}

    def _image(self, data: bytes, what: str) -> torch.Tensor:
        return rgb_tensor(decode_image(data, what, self.image_limits))

    def _summary(self, st: LSTState) -> dict[str, Any]:
        return {"content": st.content_name or None, "content_thumb": st.content_thumb or None,
                "styles": [{"name": s.name, "thumb": s.thumb} for s in st.styles]}

    @torch.no_grad()
    def set_content(self, st: LSTState, data: bytes, name: str) -> dict[str, Any]:
        st.content, st.content_name, st.resized = self._image(data, "content"), name, {}
        st.content_thumb = data_url(tensor_png(resize_short(st.content, THUMB_SIDE)))
        return self._summary(st)

    @torch.no_grad()
    def add_style(self, st: LSTState, data: bytes, name: str) -> dict[str, Any]:
        if len(st.styles) >= self.max_styles:
            raise bad_request(f"{self.max_styles} styles are loaded (task.lst.max_styles): remove one first")
        img = resize_short(self._image(data, "style"), self.style_side, self.image_limits, "style").to(self.device)
        code = self.stylizer.style_code(img)  # once per style; every preview reuses it
        thumb = data_url(tensor_png(resize_short(img, THUMB_SIDE)))
        st.styles.append(StyleEntry(name, code, thumb))
        return self._summary(st)

    def remove_style(self, st: LSTState, index: int) -> dict[str, Any]:
        if not 0 <= index < len(st.styles):
            raise bad_request(f"style {index} does not exist: {len(st.styles)} style(s) are loaded")
        del st.styles[index]
        return self._summary(st)

    def _content_at(self, st: LSTState, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The content resized to ``side`` and its encoder features, computed once per size."""
        if side not in st.resized:
            img = resize_short(st.content, side, self.image_limits, st.content_name or "content").to(self.device)
            padded, _ = self.stylizer._pad(img)
            st.resized = {side: (img, self.stylizer.encoder(padded))}
        return st.resized[side]

    @torch.no_grad()
    def preview(self, st: LSTState, body: Preview) -> dict[str, Any]:
        if st.content is None:
            raise conflict("no content image: upload one first")
        if not st.styles:
            raise conflict("no style image: upload at least one")
        try:
            alpha = check_alpha(body.alpha)
        except ValueError as err:
            raise bad_request(str(err).replace("task.alpha", "alpha")) from None
        side = int(body.side or self.sides[0])
        if side not in self.sides:
            raise bad_request(f"preview size {side} is not offered: use one of {self.sides} (task.lst.preview_sides)")
        weights = body.weights if body.weights is not None else [1.0] * len(st.styles)
        if len(weights) != len(st.styles) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise bad_request(f"weights {weights} must be one number >= 0 per style ({len(st.styles)}) with a "
                              f"positive sum")
        start = time.perf_counter()
        img, c_feat = self._content_at(st, side)
        t_style, mean = LinearStylizer.mix_codes([s.code for s in st.styles], weights)
        feat = self.stylizer.transform.apply_style(c_feat, t_style, mean)
        if alpha < 1.0:
            feat = alpha * feat + (1.0 - alpha) * c_feat
        h, w = img.shape[-2:]
        out = self.stylizer.decoder(feat)[..., :h, :w].clamp(0, 1)
        if body.photoreal:
            out = guided_filter(out, img, *self.filter_args)
        ms = (time.perf_counter() - start) * 1000
        return {"image": data_url(tensor_png(out.cpu())), "frame_ms": round(ms, 2), "width": w, "height": h}

    def frame(self, st: LSTState, data: bytes, body: Preview) -> dict[str, Any]:
        """A webcam frame as the content, stylised at once."""
        st.content, st.content_name, st.resized = self._image(data, "webcam frame"), "webcam", {}
        return self.preview(st, body)

    def routes(self, router: APIRouter, studio: Any) -> None:
        m = self.model

        @router.post("/content")
        async def content(request: Request, image: Annotated[UploadFile, File()]) -> dict[str, Any]:
            data = await studio.read_upload(image, "image")
            return await studio.call(request, m, "set_content", data, image.filename or "content")

        @router.post("/style")
        async def style(request: Request, image: Annotated[UploadFile, File()]) -> dict[str, Any]:
            data = await studio.read_upload(image, "image")
            return await studio.call(request, m, "add_style", data, image.filename or "style")

        @router.delete("/style/{index}")
        async def remove(index: int, request: Request) -> dict[str, Any]:
            return await studio.call(request, m, "remove_style", index)

        @router.post("/preview")
        async def preview(body: Preview, request: Request) -> dict[str, Any]:
            return await studio.call(request, m, "preview", body)

        @router.post("/frame")
        async def frame(request: Request, image: Annotated[UploadFile, File()], alpha: float = 1.0,
                        photoreal: bool = False, side: int | None = None) -> dict[str, Any]:
            data = await studio.read_upload(image, "image")
            return await studio.call(request, m, "frame", data, Preview(alpha=alpha, photoreal=photoreal, side=side))
