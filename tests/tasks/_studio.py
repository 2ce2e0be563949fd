"""Tiny checkpoints and a studio config for the studio tests (random weights, built in a second, no training)."""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_modules.factory import build_module
from tests.conftest import TINY_LST, compose_config

PIX2PIXHD_SIZE = 64  # stage global generates at half of dataset.image_size
N_CLUSTERS = 3


def save_checkpoint(module, path: Path) -> str:
    """What Lightning's checkpoint holds for inference: the state dict and condsynth's metadata (config included)."""
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return str(path)


def pix2pixhd_checkpoint(folder: Path) -> str:
    """A tiny pix2pixHD (stage global, 64x64 scenes, 8 classes) with 3 distinct feature centres per class, as
    task=cluster_features would leave them. Its generator has no normalisation: with random weights an instance
    norm spreads every local change over the whole image, which a trained model does not do; He-initialised
    convolutions keep the activations' scale so that the output depends visibly on the input."""
    torch.manual_seed(0)
    cfg = compose_config([f"dataset.image_size=[{2 * PIX2PIXHD_SIZE},{2 * PIX2PIXHD_SIZE}]",
                          f"model.n_clusters={N_CLUSTERS}", "model.networks.global.norm=none"], folder / "run")
    module = build_module(cfg, for_inference=True)
    with torch.no_grad():
        for m in module.netG.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        g = torch.Generator().manual_seed(1)
        module.feature_centers.copy_(torch.randn(module.feature_centers.shape, generator=g) * 3)
        module.feature_center_counts.fill_(N_CLUSTERS)
    return save_checkpoint(module, folder / "pix2pixhd.ckpt")


def lst_checkpoint(folder: Path, stage: str = "transform") -> str:
    """A tiny LST r31 checkpoint (random VGG weights)."""
    torch.manual_seed(0)
    cfg = compose_config([*TINY_LST, "model.level=r31", f"stage={stage}"], folder / f"run_{stage}", tiny=False)
    module = build_module(cfg, for_inference=True)
    return save_checkpoint(module, folder / f"lst_{stage}.ckpt")


LOCAL = "http://127.0.0.1"  # the TestClient's base URL: a Host the studio answers (its default, testserver, is refused)


def studio_client(studio, token: bool = True, **kwargs):
    """FastAPI's TestClient on ``studio``'s app, sending the studio's token (``X-Condsynth-Token``) unless told not
    to. Each client keeps its own cookies, so each is a browser session of its own."""
    from fastapi.testclient import TestClient

    from tasks.studio.app import create_app

    headers = {"X-Condsynth-Token": studio.token} if token else {}
    headers.update(kwargs.pop("headers", {}))
    kwargs.setdefault("base_url", LOCAL)
    return TestClient(create_app(studio), headers=headers, **kwargs)


def studio_config(ckpts: list[str], *overrides: str):
    """task=studio over ``ckpts`` with small preview sizes."""
    listed = ",".join(ckpts)
    return compose_config(["task=studio", f"task.ckpt_path=[{listed}]", "task.lst.preview_sides=[32,64]",
                           "task.lst.style_side=32", "task.max_upload_bytes=200000", *overrides],
                          Path(ckpts[0]).parent / "studio_run")


class Recorder:
    """An ASGI wrapper that records (method, path, Origin, Sec-Fetch-Site, status) of every answered request and the
    body bytes the app read, to see from the server's side what a client's requests got."""

    def __init__(self, app) -> None:
        self.app = app
        self.state = app.state
        self.seen: list[tuple[str, str, str | None, str | None, int]] = []
        self.received: list[int] = []  # body bytes the app read, per request

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        self.received.append(0)
        index = len(self.received) - 1

        async def counting_receive():
            message = await receive()
            self.received[index] += len(message.get("body", b""))
            return message

        async def recording_send(message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], headers.get("origin"),
                                  headers.get("sec-fetch-site"), message["status"]))
            await send(message)

        await self.app(scope, counting_receive, recording_send)
