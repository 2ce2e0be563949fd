"""The Python inference API (``from lightning_modules import load``) gives what the CLI tasks write, for every paper;
``<Module>.load_from_checkpoint`` is the same model; loaded models hold no discriminator or loss network; and
safetensors bundles round-trip with their hashes checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_modules import load, to_pil
from lightning_modules.checkpoints import CheckpointError
from lightning_modules.factory import build_module
from tests.conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(module, path) -> str:
    """What Lightning's checkpoint holds: the state dict and condsynth's metadata."""
    ckpt = {"state_dict": module.state_dict(), "global_step": 0}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return str(path)


def _png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _no_training_networks(module) -> None:
    names = {type(m).__name__ for m in module.modules()}
    assert not names & {"MultiscaleDiscriminator", "NLayerDiscriminator", "VGG19Features"}, names


# ------------------------------------------------------------------------------------------- pix2pixHD
def test_pix2pixhd_synthesize_equals_task_predict(trained_ckpt, make_config, tmp_path) -> None:
    from lightning_modules.pix2pixhd import Pix2PixHDModule
    from tasks.pix2pixhd.predict import predict

    labels, insts = tmp_path / "labels", tmp_path / "insts"
    labels.mkdir()
    insts.mkdir()
    label = np.zeros((16, 16), np.uint8)
    label[8:] = 1
    label[10:14, 3:9] = 3
    inst = label.astype(np.int32)
    inst[10:14, 3:9] = 3000
    Image.fromarray(label).save(labels / "a.png")
    Image.fromarray(inst.astype(np.uint16)).save(insts / "a.png")
    cfg = make_config("task=predict", f"task.ckpt_path={trained_ckpt}", f"dataset.predict_label_dir={labels}",
                      f"dataset.predict_inst_dir={insts}", "task.output_size=model", run_dir=tmp_path / "run")
    written = predict(cfg)

    model = load(trained_ckpt)
    out = model.synthesize(label, inst)  # NumPy in, [1, 3, H, W] in [0, 1] out
    assert out.shape == (1, 3, 16, 16) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert np.array_equal(np.asarray(to_pil(out[0])), _png(written[0]))
    assert not model.training and model.netD is None and model.objective.perceptual is None
    _no_training_networks(model)
    same = Pix2PixHDModule.load_from_checkpoint(trained_ckpt)
    assert torch.equal(same.synthesize(torch.from_numpy(label), Image.fromarray(inst)), out)
    with pytest.raises(ValueError, match=rf"label ids must be in \[0, {model.label_nc - 1}\]"):
        model.synthesize(label + model.label_nc)


def test_load_from_checkpoint_of_another_paper_and_training_networks(trained_ckpt) -> None:
    from lightning_modules.lst import LSTModule

    with pytest.raises(CheckpointError, match="is a 'pix2pixhd' checkpoint, not a LSTModule one"):
        LSTModule.load_from_checkpoint(trained_ckpt)
    full = load(trained_ckpt, training_networks=True)
    assert full.netD is not None and full.objective.perceptual is not None


# ------------------------------------------------------------------------------------------- LST
def test_lst_stylize_equals_task_stylize(tmp_path) -> None:
    from tasks.lst.stylize import read_image, stylize
    from tests.conftest import TINY_LST

    torch.manual_seed(0)
    base = [*TINY_LST, "model.level=r31"]
    ckpt = _save(build_module(compose_config([*base, "stage=transform"], tmp_path / "t", tiny=False),
                              for_inference=True), tmp_path / "lst.ckpt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), np.uint8)).save(tmp_path / "c.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(tmp_path / "s.png")
    cfg = compose_config([*base, "task=stylize", f"task.ckpt_path={ckpt}", f"task.content={tmp_path / 'c.png'}",
                          f"task.style={tmp_path / 's.png'}", "task.alpha=0.6"], tmp_path / "run", tiny=False)
    written = stylize(cfg)["outputs"][0]
    model = load(ckpt)
    out = model.stylize(read_image(str(tmp_path / "c.png")), read_image(str(tmp_path / "s.png")), alpha=0.6)
    assert np.array_equal(np.asarray(to_pil(out[0])), _png(written))
    _no_training_networks(model)
    assert isinstance(model.loss_network, torch.nn.Identity) if hasattr(model, "loss_network") else True


# ------------------------------------------------------------------------------------------- EDN
def test_edn_transfer_equals_task_transfer(tmp_path, monkeypatch) -> None:
    import tasks.edn.transfer as transfer_task
    from tests.conftest import TINY_EDN

    torch.manual_seed(0)
    ckpt = _save(build_module(compose_config(TINY_EDN, tmp_path / "t", tiny=False), for_inference=True),
                 tmp_path / "edn.ckpt")
    written: dict[str, list[np.ndarray]] = {}

    class Capture(transfer_task.VideoWriter):
        def write(self, frame):
            written.setdefault(self.path, []).append(np.array(frame))
            return super().write(frame)

    monkeypatch.setattr(transfer_task, "VideoWriter", Capture)
    cfg = compose_config([*TINY_EDN, "task=transfer", f"task.ckpt_path={ckpt}", "task.source=synthetic",
                          "task.num_frames=3"], tmp_path / "run", tiny=False)
    result = transfer_task.transfer(cfg)
    frames = written[result["output"]]
    width = frames[0].shape[1]
    poses = [side[:, width: 2 * width] for side in written[result["side_by_side"]]]  # source | pose | output
    out = load(ckpt).transfer(poses)
    assert out.shape == (3, 3, *frames[0].shape[:2])
    assert all(np.array_equal(np.asarray(to_pil(o)), f) for o, f in zip(out, frames, strict=True))


# ------------------------------------------------------------------------------------------- X2Face
def test_x2face_reenact_equals_task_reenact(tmp_path, monkeypatch) -> None:
    import tasks.x2face.reenact as reenact_task
    from datamodules.transforms import read_image
    from tests.lightning_modules.test_x2face import TINY_X2FACE, _frames

    torch.manual_seed(0)
    ckpt = _save(build_module(compose_config(TINY_X2FACE, tmp_path / "t", tiny=False), for_inference=True),
                 tmp_path / "x2face.ckpt")
    src, drv = _frames(tmp_path)
    added: dict[str, list[np.ndarray]] = {}
    original_add = reenact_task.VideoOut.add

    def capture(self, frame):
        original_add(self, frame)
        added.setdefault(self.path, []).append(self.frames[-1])

    monkeypatch.setattr(reenact_task.VideoOut, "add", capture)
    cfg = compose_config([*TINY_X2FACE, "task=reenact", f"task.ckpt_path={ckpt}", f"task.source={src}",
                          f"task.driving={drv}"], tmp_path / "run", tiny=False)
    result = reenact_task.reenact(cfg)
    frames = added[result["videos"][0]]
    size = int(cfg.dataset.image_size[0])
    source = reenact_task._to_tensor(read_image(f"{src}/0.png"), size)
    driving, _ = reenact_task.read_driving_frames(drv, size)
    out = load(ckpt).reenact(source, driving=driving)
    assert len(frames) == len(out) == 3
    assert all(np.array_equal(np.asarray(to_pil(o)), f) for o, f in zip(out, frames, strict=True))


# ------------------------------------------------------------------------------------------- bundles
def test_safetensors_bundle_round_trip_and_a_flipped_byte(trained_ckpt, make_config, tmp_path) -> None:
    from tasks.export import export

    folder = export(make_config("task=export", f"task.ckpt_path={trained_ckpt}", "task.format=safetensors",
                                run_dir=tmp_path / "run"))
    label = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    label[..., 8:, :] = 2
    bundled = load(folder)
    assert torch.equal(bundled.synthesize(label), load(trained_ckpt).synthesize(label))
    _no_training_networks(bundled)
    with pytest.raises(CheckpointError, match="holds inference weights only"):
        load(folder, training_networks=True)
    weights = f"{folder}/model.safetensors"
    data = bytearray(open(weights, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(weights, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match its SHA-256"):
        load(folder)
