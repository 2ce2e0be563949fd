"""Each paper's own task=test protocol (model.test_metrics): LST's content/style losses and frames per second
(tasks/lst/metrics.py), EDN's face-crop SSIM/LPIPS (tasks/edn/metrics.py), X2Face's photometric L1 with 1 and 3
sources, identity distance and pose error (tasks/x2face/metrics.py). Hand-computable cases first, then task=test."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from tasks.edn.metrics import FaceFigures
from tasks.lst.metrics import LSTTestMetrics, frames_per_second
from tasks.x2face.metrics import X2FaceTestMetrics

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _const(value: float | list[float], n: int = 2, size: int = 8) -> torch.Tensor:
    v = torch.tensor(value if isinstance(value, list) else [value] * 3, dtype=torch.float32)
    return v.view(1, 3, 1, 1).expand(n, 3, size, size).clone()


# ------------------------------------------------------------------------------------------------------ LST
class _LSTStub(torch.nn.Module):
    """Loss network = the image itself at every layer (so the losses are hand-computable)."""

    is_decoder_stage = False
    content_loss = SimpleNamespace(layer="relu4_1")
    style_loss = SimpleNamespace(layers=("relu1_1",))

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def loss_network(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"relu1_1": x, "relu4_1": x}


def test_lst_content_and_style_losses_match_a_hand_computation() -> None:
    """Constant images: content = (0.5 - 0.2)^2; style = 3 (a - b)^2 (channel means) + (a^2 - b^2)^2 (9 Gram entries
    of (a^2 - b^2) / 3), a = 0.5 (output), b = 0.1 (style). Mutation checked: the content loss against the style
    image (0.16 instead of 0.09) fails."""
    metrics = LSTTestMetrics(None, _LSTStub(), fps_sizes=[])
    for n in (2, 3):  # a per-image mean over batches of different sizes
        metrics.update({"content": _const(0.2, n), "style": _const(0.1, n)}, _const(0.5, n))
    values, skipped = metrics.compute()
    assert not skipped
    assert values["content_loss"] == pytest.approx(0.09)
    assert values["style_loss"] == pytest.approx(3 * 0.4 ** 2 + (0.25 - 0.01) ** 2)


def test_lst_frames_per_second_on_a_fake_clock() -> None:
    """Each frame takes 0.25 s of a fake clock: 4 frames/s whatever the warm-up. Mutation checked: returning
    elapsed / frames (s per frame, 0.25) fails."""
    now = [0.0]

    class Stylizer:
        def style_code(self, style: torch.Tensor) -> tuple[int, int]:
            now[0] += 100.0  # not timed
            return 0, 0

        def stylize_with_code(self, content: torch.Tensor, t: int, m: int) -> None:
            now[0] += 0.25

    assert frames_per_second(Stylizer(), 8, frames=8, warmup=3, device=CPU, clock=lambda: now[0]) == 4.0


def test_lst_decoder_stage_skips_the_stylisation_figures_with_the_fix() -> None:
    stub = _LSTStub()
    stub.is_decoder_stage = True
    values, skipped = LSTTestMetrics(None, stub, fps_sizes=[256, 512]).compute()
    assert not values and set(skipped) == {"content_loss", "style_loss", "fps_256", "fps_512"}
    assert "stage=transform" in skipped["fps_512"]


# ------------------------------------------------------------------------------------------------------ EDN
def _alexnet(path) -> str:
    import torchvision

    torch.save(torchvision.models.alexnet(weights=None).state_dict(), str(path))
    return str(path)


def test_edn_face_ssim_and_lpips_are_on_the_face_box_of_the_compared_frame(tmp_path) -> None:
    """Generated = real inside frame t+1's face box, noise elsewhere (and at frame t's box): face SSIM 1, face LPIPS 0
    (random AlexNet in torchvision's layout through task=test's LPIPS rule). Mutation checked: cropping at
    face_box[:, 0] (frame t's box) gives SSIM ~0 and fails."""
    g = torch.Generator().manual_seed(0)
    real = torch.rand(2, 3, 64, 64, generator=g)
    fake = torch.rand(2, 3, 64, 64, generator=g)
    boxes = torch.tensor([[[0, 0, 32], [32, 32, 32]], [[32, 0, 32], [0, 32, 32]]])  # [B, 2 frames, (top, left, size)]
    for i, (top, left, s) in enumerate(boxes[:, 1].tolist()):
        fake[i, :, top:top + s, left:left + s] = real[i, :, top:top + s, left:left + s]
    cfg = OmegaConf.create({"task": {"lpips_weights": _alexnet(tmp_path / "alexnet.pth")}})
    faces = FaceFigures(cfg, CPU)
    faces.update({"face_box": boxes}, fake, real)
    values, skipped = faces.compute()
    assert not skipped
    assert values["face_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert values["face_lpips"] == pytest.approx(0.0, abs=1e-6)
    assert faces.weights == {"face_lpips": str(tmp_path / "alexnet.pth")}


def test_edn_face_lpips_is_skipped_with_the_one_line_reason_without_the_file(tmp_path) -> None:
    faces = FaceFigures(OmegaConf.create({"task": {"lpips_weights": str(tmp_path / "missing.pth")}}), CPU)
    assert "task=fetch_weights" in faces.skipped["face_lpips"] and "missing.pth" in faces.skipped["face_lpips"]


# --------------------------------------------------------------------------------------------------- X2Face
class _X2FaceStub(torch.nn.Module):
    """generate = the mean of the first k sources (hand-computable L1)."""

    def __init__(self, stage: str = "photometric") -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.stage_spec = SimpleNamespace(name=stage)

    def generate(self, batch: dict, num_sources: int | None = None) -> torch.Tensor:
        return batch["source"][:, :num_sources].mean(1)

    def pose_error_deg(self, batch: dict) -> torch.Tensor:
        return torch.tensor([[1.0, 2.0, 3.0]]).expand(batch["driving"].shape[0], 3)


class _MeanColour(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"conv7": x.mean(dim=(2, 3))}


def test_x2face_l1_identity_distance_and_pose_error_match_a_hand_computation() -> None:
    """Sources 0.2, 0.4, 0.9 (grey), driving 0.3: L1 with 1 source 0.1, with 3 (mean 0.5) 0.2. Identity = the mean
    colour: generated red (1, 0, 0) vs driving yellow (1, 1, 0): 1 - 1/sqrt(2); vs the source green (0, 1, 0): 1;
    driving vs source: 1 - 1/sqrt(2). Mutation checked: 1 + cos instead of 1 - cos fails."""
    sources = torch.stack([_const(0.2), _const(0.4), _const(0.9)], dim=1)
    batch = {"source": sources, "driving": _const(0.3), "driving_pose": torch.zeros(2, 3)}
    metrics = X2FaceTestMetrics(OmegaConf.create({"model": {}}), _X2FaceStub("pose_code"),
                                identity_network=_MeanColour())
    metrics.update(batch, _const([1.0, 0.0, 0.0]), batch["driving"])
    values, skipped = metrics.compute()
    assert not skipped
    assert values["l1_1src"] == pytest.approx(0.1) and values["l1_3src"] == pytest.approx(0.2)
    # identity on other images: red generated, yellow driving, green first source
    batch = {"source": _const([0.0, 1.0, 0.0])[:, None], "driving": _const([1.0, 1.0, 0.0])}
    metrics = X2FaceTestMetrics(OmegaConf.create({"model": {}}), _X2FaceStub(), num_sources=[1, 3],
                                identity_network=_MeanColour())
    metrics.update(batch, _const([1.0, 0.0, 0.0]), batch["driving"])
    values, skipped = metrics.compute()
    assert values["identity_distance"] == pytest.approx(1 - 1 / math.sqrt(2))
    assert values["identity_distance_source"] == pytest.approx(1.0)
    assert values["identity_distance_real"] == pytest.approx(1 - 1 / math.sqrt(2))
    assert "fewer than 3" in skipped["l1_3src"] and "stage pose_code" in skipped["pose_error_deg"]


def test_x2face_pose_error_and_missing_identity_network() -> None:
    sources = torch.stack([_const(0.2)], dim=1)
    batch = {"source": sources, "driving": _const(0.3), "driving_pose": torch.zeros(2, 3)}
    metrics = X2FaceTestMetrics(OmegaConf.create({"model": {"identity_weights": None}}), _X2FaceStub("pose_code"),
                                num_sources=[1])
    metrics.update(batch, batch["driving"], batch["driving"])
    values, skipped = metrics.compute()
    assert values["pose_error_deg"] == pytest.approx(2.0) and values["pose_error_deg_roll"] == pytest.approx(3.0)
    assert "model=face_id" in skipped["identity_distance"]


# ------------------------------------------------------------------------------------------------ task=test
@pytest.mark.slow
def test_task_test_reports_x2face_protocol_in_one_report(tmp_path) -> None:
    """A tiny photometric run, then task=test with an identity network file (random FaceIdentityNet of the tiny
    face_id sizes): L1 with 1 and 3 sources, the identity distances, pose error skipped with its reason."""
    from networks.x2face import FaceIdentityNet
    from tasks.evaluate import test
    from tasks.train import train
    from tests.conftest import TINY_X2FACE, compose_config

    train(compose_config([*TINY_X2FACE, "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
                          "trainer.num_sanity_val_steps=0"], tmp_path / "train"))
    ckpt = str(tmp_path / "train" / "checkpoints" / "last.ckpt")
    ident = str(tmp_path / "ident.pth")
    sizes = {"num_classes": 4, "channels": [4, 8, 8, 8, 8], "fc": 16, "pool_size": 1}
    torch.save(FaceIdentityNet(**sizes).state_dict(), ident)
    overrides = [f"model.networks.identity.{k}={v}".replace("'", "") for k, v in sizes.items()]
    cfg = compose_config([*TINY_X2FACE, "task=test", f"task.ckpt_path={ckpt}", "task.metrics=[psnr,ssim]",
                          f"model.test_metrics.identity_weights={ident}", *overrides], tmp_path / "run")
    values = test(cfg)
    for name in ("psnr", "l1_1src", "l1_3src", "identity_distance", "identity_distance_source",
                 "identity_distance_real"):
        assert name in values and math.isfinite(values[name]), name
    report = json.load(open(tmp_path / "run" / "metrics.json"))
    assert "pose_code" in report["skipped"]["pose_error_deg"]
    assert report["weights"]["identity"]["path"] == ident


def test_task_test_reports_lst_protocol(tmp_path) -> None:
    """A stage-transform checkpoint (built, not trained): test_step's figures plus content/style losses and fps."""
    from lightning_modules.factory import build_module
    from tasks.evaluate import test
    from tests.tasks.test_lst_inference import lst_config, make_trained_like, save_checkpoint

    torch.manual_seed(0)
    module = build_module(lst_config(tmp_path / "build", "stage=transform"), for_inference=True)
    make_trained_like(module)
    ckpt = save_checkpoint(module, tmp_path / "transform.ckpt")
    cfg = lst_config(tmp_path / "run", "stage=transform", "task=test", f"task.ckpt_path={ckpt}",
                     "model.test_metrics.fps_sizes=[16,32]", "model.test_metrics.fps_frames=2",
                     "model.test_metrics.fps_warmup=1")
    values = test(cfg)
    for name in ("style", "content", "content_loss", "style_loss", "fps_16", "fps_32"):
        assert name in values and math.isfinite(values[name]) and values[name] >= 0, name
    assert values["fps_16"] > 0
    md = open(tmp_path / "run" / "metrics.md").read()
    assert "| fps_32 |" in md and "| style_loss |" in md
