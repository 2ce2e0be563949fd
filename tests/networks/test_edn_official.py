"""model=edn model.official_weights=<folder>: files in the official EverybodyDanceNow layouts (written here, tiny
sizes; no official code needed) load into our networks with identical outputs, and bad folders are one-line errors.

Official layouts (carolineec/EverybodyDanceNow ``models/networks.py`` + ``pix2pixHD_model_fullts.py``, the generator
and multiscale D re-stated in tests/tasks/test_import_official.py): ``latest_net_G.pth`` (pix2pixHD G on label +
previous frame), ``latest_net_D.pth`` (the temporal multiscale D on 12 channels), ``latest_net_Gface.pth`` (global G),
``latest_net_Dface.pth`` (one NLayerDiscriminator with batch norm, flat sequential ``facemodel``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_modules.factory import build_module
from networks.official import OfficialWeightsError
from tasks.config import compose_config
from tests.conftest import TINY_EDN
from tests.tasks.test_import_official import OfficialGlobal, OfficialLocal, OfficialMultiscaleD, save

pytestmark = pytest.mark.usefixtures("one_thread")


class OfficialFaceD(nn.Module):
    """``NLayerDiscriminator(6, ndf, n_layers, nn.BatchNorm2d, addname='face')``: one flat ``facemodel``."""

    def __init__(self, cin: int = 6, ndf: int = 4, n_layers: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True)]
        nf = ndf
        for _ in range(1, n_layers):
            layers += [nn.Conv2d(nf, min(nf * 2, 512), 4, 2, 2), nn.BatchNorm2d(min(nf * 2, 512)),
                       nn.LeakyReLU(0.2, True)]
            nf = min(nf * 2, 512)
        layers += [nn.Conv2d(nf, min(nf * 2, 512), 4, 1, 2), nn.BatchNorm2d(min(nf * 2, 512)),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(min(nf * 2, 512), 1, 4, 1, 2)]
        self.facemodel = nn.Sequential(*layers)

    def forward(self, x):
        return self.facemodel(x)


def _save_old(net: nn.Module, path: Path) -> None:
    """As the official save_network under the PyTorch of the time: no batch-norm step counters."""
    save(net, path)
    torch.save({k: v for k, v in torch.load(path).items() if not k.endswith("num_batches_tracked")}, path)


def _module(folder: Path, *overrides: str):
    cfg = compose_config([*TINY_EDN, *overrides, f"model.official_weights={folder}"])
    return build_module(cfg, for_inference=True).eval()


def test_global_stage_g_and_temporal_d_identical(tmp_path) -> None:
    g, d = OfficialGlobal(6, ngf=4, n_down=2, n_blocks=1), OfficialMultiscaleD(12, ndf=4, n_layers=2, num_d=2)
    save(g, tmp_path / "latest_net_G.pth")
    save(d, tmp_path / "latest_net_D.pth")
    module = _module(tmp_path)
    label, prev, frames = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), torch.rand(2, 6, 16, 16)
    with torch.no_grad():
        assert torch.equal(module.netG(label, prev), g(torch.cat([label, prev], 1)))
        assert torch.equal(module.netG(label), g(torch.cat([label, torch.zeros_like(prev)], 1)))
        x = torch.cat([label, prev, frames], 1)
        for ours, theirs in zip(module.netDT(x), d(x), strict=True):
            assert len(ours) == len(theirs) and all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_face_stage_local_g_face_g_and_batch_norm_face_d_identical(tmp_path) -> None:
    g = OfficialLocal(6, ngf=2, n_down=2, n_blocks=1, n_blocks_local=1)
    gface, dface = OfficialGlobal(6, ngf=4, n_down=1, n_blocks=1), OfficialFaceD(6, ndf=4, n_layers=1)
    save(g, tmp_path / "latest_net_G.pth")
    save(gface, tmp_path / "latest_net_Gface.pth")
    _save_old(dface, tmp_path / "latest_net_Dface.pth")
    save(OfficialMultiscaleD(12, ndf=4, n_layers=2, num_d=3), tmp_path / "latest_net_D.pth")  # not used in stage face
    module = _module(tmp_path, "stage=face")
    dface.eval()
    label, prev, face = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(2, 6, 8, 8)
    with torch.no_grad():
        assert torch.equal(module.netG(label, prev), g(torch.cat([label, prev], 1)))
        assert torch.equal(module.faceG.residual(face[:, :3], face[:, 3:]), gface(face))
        assert torch.equal(module.faceD(face)[0][-1], dface(face))
        module.faceD.train()
        dface.train()
        assert torch.equal(module.faceD(face)[0][-1], dface(face))


def test_bad_folders_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"latest_net_G\.pth not found .*--checkpoints_dir/--name") as exc:
        _module(tmp_path)
    assert "\n" not in str(exc.value)
    # a pix2pixHD generator (label map 35 + instance map) instead of EDN's (label + previous frame)
    save(OfficialGlobal(36, ngf=4, n_down=2, n_blocks=1), tmp_path / "latest_net_G.pth")
    with pytest.raises(OfficialWeightsError, match=r"latest_net_G\.pth: its first convolution takes 36 input "
                                                   r"channels, .* takes 6: a pix2pixHD file"):
        _module(tmp_path)
    # other widths than the config's: the key, the shapes and the config keys to set
    save(OfficialGlobal(6, ngf=8, n_down=2, n_blocks=1), tmp_path / "latest_net_G.pth")
    with pytest.raises(OfficialWeightsError, match=r"latest_net_G\.pth does not fit .*wrong shapes: model\.1\.weight "
                                                   r"\(8, 6, 7, 7\) \(expected \(4, 6, 7, 7\)\).*model\.networks") as exc:
        _module(tmp_path)
    assert "\n" not in str(exc.value)
    # the official D of the local/face stages (--num_D 3) with our default num_D 2
    save(OfficialGlobal(6, ngf=4, n_down=2, n_blocks=1), tmp_path / "latest_net_G.pth")
    save(OfficialMultiscaleD(12, ndf=4, n_layers=2, num_d=3), tmp_path / "latest_net_D.pth")
    with pytest.raises(OfficialWeightsError, match=r"latest_net_D\.pth .*left-over keys: scale2_layer0.*--num_D 3"):
        _module(tmp_path)
    assert _module(tmp_path, "model.networks.discriminator.num_D=3").netDT.num_D == 3
    # stage face without the face generator's file
    save(OfficialLocal(6, ngf=2, n_down=2, n_blocks=1, n_blocks_local=1), tmp_path / "latest_net_G.pth")
    with pytest.raises(FileNotFoundError, match=r"latest_net_Gface\.pth not found \(faceGen"):
        _module(tmp_path, "stage=face")


def test_face_d_is_the_official_batch_norm_d_without_feature_matching() -> None:
    cfg = compose_config(["model=edn", "size=paper"])
    assert cfg.model.networks.face_discriminator.norm == "batch"
    assert cfg.model.networks.face_discriminator.num_D == 1 and cfg.model.networks.face_discriminator.ndf == 64
    assert cfg.model.losses.face.feature_matching is None


def test_import_official_writes_a_face_stage_checkpoint(tmp_path) -> None:
    from lightning_modules.checkpoints import read_checkpoint, read_record
    from lightning_modules.loading import inference_config
    from tasks.import_official import import_official
    from tasks.inference import load_for_inference

    folder = tmp_path / "MY_MODEL_NAME_face"
    folder.mkdir()
    g = OfficialLocal(6, ngf=2, n_down=2, n_blocks=1, n_blocks_local=1)
    gface, dface = OfficialGlobal(6, ngf=4, n_down=1, n_blocks=1), OfficialFaceD(6, ndf=4, n_layers=1)
    save(g, folder / "latest_net_G.pth")
    save(gface, folder / "latest_net_Gface.pth")
    _save_old(dface, folder / "latest_net_Dface.pth")
    ckpt = import_official(compose_config([*TINY_EDN, "task=import_official", f"task.files=[{folder}]"],
                                          tmp_path / "import"))
    meta = read_checkpoint(ckpt)["condsynth"]
    assert meta["stage"] == "face"
    rebuilt = inference_config(read_record(ckpt))  # what the loader builds from: the import's keys are stored
    assert rebuilt.model.networks.local.ngf == 2 and rebuilt.stage.generator == "local"
    module = load_for_inference(compose_config([*TINY_EDN, "stage=face"], tmp_path / "t"), ckpt,
                                training_networks=True)  # the face D is compared too
    dface.eval()
    label, prev, face = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(2, 6, 8, 8)
    with torch.no_grad():
        assert torch.equal(module.netG(label, prev), g(torch.cat([label, prev], 1)))
        assert torch.equal(module.faceG.residual(face[:, :3], face[:, 3:]), gface(face))
        assert torch.equal(module.faceD(face)[0][-1], dface(face))
    # a pix2pixHD generator is refused with the model to use
    save(OfficialGlobal(36, ngf=4, n_down=2, n_blocks=1), tmp_path / "latest_net_G.pth")
    with pytest.raises(OfficialWeightsError, match=r"takes 36 input channels, an EDN G takes 6.*model=pix2pixhd"):
        import_official(compose_config([*TINY_EDN, "task=import_official",
                                        f"task.files=[{tmp_path / 'latest_net_G.pth'}]"], tmp_path / "import2"))


def test_import_official_global_stage_with_the_temporal_d(tmp_path) -> None:
    from lightning_modules.checkpoints import read_checkpoint, read_record
    from lightning_modules.loading import inference_config
    from tasks.import_official import import_official
    from tasks.inference import load_for_inference

    g, d = OfficialGlobal(6, ngf=4, n_down=2, n_blocks=1), OfficialMultiscaleD(12, ndf=4, n_layers=2, num_d=3)
    save(g, tmp_path / "latest_net_G.pth")
    save(d, tmp_path / "latest_net_D.pth")
    files = f"task.files=[{tmp_path / 'latest_net_G.pth'},{tmp_path / 'latest_net_D.pth'}]"
    ckpt = import_official(compose_config([*TINY_EDN, "task=import_official", files], tmp_path / "import"))
    meta = read_checkpoint(ckpt)["condsynth"]
    assert meta["stage"] == "global" and inference_config(read_record(ckpt)).model.networks.discriminator.num_D == 3
    module = load_for_inference(compose_config(TINY_EDN, tmp_path / "t"), ckpt, training_networks=True)
    x = torch.rand(1, 12, 16, 16)
    with torch.no_grad():
        for ours, theirs in zip(module.netDT(x), d(x), strict=True):
            assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
