"""task=import_official: files in the official key layouts -> a condsynth checkpoint with identical outputs.

The official layouts are re-stated here by hand (NVIDIA/pix2pixHD ``models/networks.py``: ``GlobalGenerator.model``,
``LocalEnhancer.model`` / ``model1_1`` / ``model1_2``, ``Encoder.model``, ``MultiscaleDiscriminator`` with
``scale{i}_layer{j}`` or ``layer{i}``, scale ``num_D-1`` on the full-resolution input; sunshineatnoon/
LinearStyleTransfer ``encoder3``, ``decoder3``, ``MulLayer``); the tests never need the official code. Each
re-statement has random weights; the imported networks must give exactly its outputs (max diff 0).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lightning_modules.checkpoints import read_checkpoint
from lightning_modules.factory import build_module
from lightning_modules.stages import StageError
from networks.official import OfficialWeightsError
from tasks.cli import checkpoint_overrides
from tasks.import_official import import_official
from tasks.inference import load_for_inference
from tests.conftest import TINY_LST, compose_config

LABEL_NC, FEAT = 5, 3


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------ official layouts, re-stated
class OfficialResnetBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
                                        nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3),
                                        nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.conv_block(x)


def stem(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7), nn.InstanceNorm2d(cout), nn.ReLU(True)]


def down(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.InstanceNorm2d(cout), nn.ReLU(True)]


def up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), nn.InstanceNorm2d(cout),
            nn.ReLU(True)]


def out(cin: int, cout: int = 3) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7), nn.Tanh()]


def official_global_layers(cin: int, ngf: int, n_down: int, n_blocks: int, with_blocks: bool = True) -> list:
    layers = stem(cin, ngf)
    for i in range(n_down):
        layers += down(ngf * 2**i, ngf * 2 ** (i + 1))
    layers += [OfficialResnetBlock(ngf * 2**n_down) for _ in range(n_blocks if with_blocks else 0)]
    for i in range(n_down, 0, -1):
        layers += up(ngf * 2**i, ngf * 2 ** (i - 1))
    return layers + out(ngf, 3 if with_blocks else FEAT)


class OfficialGlobal(nn.Module):
    def __init__(self, cin: int, ngf: int = 4, n_down: int = 2, n_blocks: int = 1) -> None:
        super().__init__()
        self.model = nn.Sequential(*official_global_layers(cin, ngf, n_down, n_blocks))

    def forward(self, x):
        return self.model(x)


class OfficialLocal(nn.Module):
    """One enhancer: ``model`` = G1 (ngf * 2) without its last 3 modules, ``model1_1`` / ``model1_2``."""

    def __init__(self, cin: int, ngf: int = 4, n_down: int = 2, n_blocks: int = 1, n_blocks_local: int = 1) -> None:
        super().__init__()
        self.model = nn.Sequential(*official_global_layers(cin, 2 * ngf, n_down, n_blocks)[:-3])
        self.model1_1 = nn.Sequential(*stem(cin, ngf), *down(ngf, 2 * ngf))
        self.model1_2 = nn.Sequential(*[OfficialResnetBlock(2 * ngf) for _ in range(n_blocks_local)],
                                      *up(2 * ngf, ngf), *out(ngf))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        return self.model1_2(self.model1_1(x) + self.model(self.downsample(x)))


def official_d_blocks(cin: int, ndf: int, n_layers: int) -> list[list[nn.Module]]:
    blocks = [[nn.Conv2d(cin, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True)]]
    nf = ndf
    for _ in range(1, n_layers):
        blocks.append([nn.Conv2d(nf, min(nf * 2, 512), 4, 2, 2), nn.InstanceNorm2d(min(nf * 2, 512)),
                       nn.LeakyReLU(0.2, True)])
        nf = min(nf * 2, 512)
    blocks.append([nn.Conv2d(nf, min(nf * 2, 512), 4, 1, 2), nn.InstanceNorm2d(min(nf * 2, 512)),
                   nn.LeakyReLU(0.2, True)])
    blocks.append([nn.Conv2d(min(nf * 2, 512), 1, 4, 1, 2)])
    return blocks


class OfficialMultiscaleD(nn.Module):
    def __init__(self, cin: int, ndf: int = 4, n_layers: int = 2, num_d: int = 2, interm: bool = True) -> None:
        super().__init__()
        self.num_d, self.interm = num_d, interm
        for i in range(num_d):
            blocks = official_d_blocks(cin, ndf, n_layers)
            if interm:
                for j, b in enumerate(blocks):
                    setattr(self, f"scale{i}_layer{j}", nn.Sequential(*b))
            else:
                setattr(self, f"layer{i}", nn.Sequential(*[m for b in blocks for m in b]))
        self.n_blocks = n_layers + 2
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        result = []
        for i in range(self.num_d):
            k = self.num_d - 1 - i  # the official forward: the last scale sees the full resolution
            if self.interm:
                feats, h = [], x
                for j in range(self.n_blocks):
                    h = getattr(self, f"scale{k}_layer{j}")(h)
                    feats.append(h)
                result.append(feats)
            else:
                result.append([getattr(self, f"layer{k}")(x)])
            x = self.downsample(x)
        return result


def save(net: nn.Module, path: Path) -> str:
    torch.manual_seed(len(path.name))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    torch.save(net.state_dict(), path)
    return str(path)


def run_import(tmp_path: Path, model: str, files: list[str], *extra: str) -> str:
    tiny = ["model=lst", *TINY_LST[1:]] if model == "lst" else []
    cfg = compose_config([*tiny, "task=import_official", f"task.files=[{','.join(files)}]", *extra],
                         tmp_path / "import", tiny=model != "lst")
    return import_official(cfg)


def network_overrides(ckpt: str) -> list[str]:
    """The stored values that rebuild an imported checkpoint's networks (what the loader sets), as overrides."""
    from lightning_modules.checkpoints import read_record
    from lightning_modules.loading import config_names, stored_values

    record = read_record(ckpt)
    values = stored_values(record, compose_config(config_names(record)))
    def text(v):
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    return [f"{k}={text(v)}" for k, v in values.items()]


def rebuilt_config(ckpt: str):
    """The config the loader rebuilds an imported checkpoint's networks from."""
    from lightning_modules.checkpoints import read_record
    from lightning_modules.loading import inference_config

    return inference_config(read_record(ckpt))


def from_checkpoint(argv: list[str]) -> list[str]:
    """The overrides run.py adds for ``argv``, without ``model=`` (the tests' tiny settings already pick it, and a
    chosen group would drop them)."""
    return [o for o in checkpoint_overrides(argv) if not o.startswith("model=")]


def inference_module(ckpt: str, run_dir: Path, task: str = "predict", tiny: bool = True):
    argv = [f"task={task}", f"task.ckpt_path={ckpt}"]
    base = [] if tiny else ["model=lst", *TINY_LST[1:]]
    cfg = compose_config([*base, *argv, *from_checkpoint(argv)], run_dir, tiny=tiny)
    return cfg, load_for_inference(cfg, ckpt, training_networks=True)  # the D is compared too


# ------------------------------------------------------------------------ pix2pixHD
def test_global_generator_encoder_and_discriminator_give_identical_outputs(tmp_path) -> None:
    folder = tmp_path / "label2city_512p"
    folder.mkdir()
    g = OfficialGlobal(LABEL_NC + 1 + FEAT)
    e = nn.Module()
    e.model = nn.Sequential(*official_global_layers(3, 4, 2, 0, with_blocks=False))
    d = OfficialMultiscaleD(LABEL_NC + 1 + 3, interm=True)
    save(g, folder / "latest_net_G.pth")
    save(e, folder / "latest_net_E.pth")
    save(d, folder / "latest_net_D.pth")
    ckpt = run_import(tmp_path, "pix2pixhd", [str(folder)])
    meta = read_checkpoint(ckpt)["condsynth"]
    stored = network_overrides(ckpt)
    rebuilt = rebuilt_config(ckpt)
    assert meta["stage"] == "global" and rebuilt.dataset.label_nc == 5 and rebuilt.model.label_nc == 5
    assert rebuilt.model.networks.discriminator.num_D == 2 and rebuilt.model.use_features is True
    _, module = inference_module(ckpt, tmp_path / "pred")
    x = torch.randn(2, LABEL_NC + 1 + FEAT, 16, 24)
    img = torch.randn(1, 3, 16, 24)
    cond = torch.randn(1, LABEL_NC + 1 + 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(module.netG(x), g(x))
        assert torch.equal(module.netE.model(img), e.model(img))
        ours, ref = module.netD(cond), d(cond)
    assert len(ours) == len(ref) == 2
    for ours_scale, ref_scale in zip(ours, ref, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(ours_scale, ref_scale, strict=True))
    # the official --load_pretrain label2city_512p: stage local starts from the imported G1 (and D, E)
    local = build_module(compose_config(["stage=local", f"stage.init_from={ckpt}", *stored],
                                        tmp_path / "local"))
    with torch.no_grad():
        assert torch.equal(local.netG.global_body(x), g.model[:-3](x))
        assert torch.equal(local.netE.model(img), e.model(img))


def _label_maps(folder: Path) -> tuple[str, str]:
    labels, insts = folder / "labels", folder / "insts"
    labels.mkdir()
    insts.mkdir()
    label = np.zeros((16, 24), np.uint8)
    label[8:, :] = 2
    label[4:12, 6:14] = 4
    inst = label.astype(np.uint16) * 1000
    Image.fromarray(label).save(labels / "a.png")
    Image.fromarray(inst).save(insts / "a.png")
    return str(labels), str(insts)


def test_local_enhancer_and_flat_discriminator_import_then_predict_and_export(tmp_path) -> None:
    from tasks.export import export
    from tasks.pix2pixhd.predict import predict

    g = OfficialLocal(LABEL_NC + 1)
    d = OfficialMultiscaleD(LABEL_NC + 1 + 3, num_d=3, interm=False)
    files = [save(g, tmp_path / "latest_net_G.pth"), save(d, tmp_path / "latest_net_D.pth")]
    ckpt = run_import(tmp_path, "pix2pixhd", files)
    meta = read_checkpoint(ckpt)["condsynth"]
    assert meta["stage"] == "joint" and meta["official"]["options"]["label_nc"] == LABEL_NC
    stored = network_overrides(ckpt)
    rebuilt = rebuilt_config(ckpt)
    assert rebuilt.model.use_features is False and rebuilt.model.networks.local.ngf == 4
    cfg, module = inference_module(ckpt, tmp_path / "pred")
    x = torch.randn(1, LABEL_NC + 1, 16, 24)
    cond = torch.randn(1, LABEL_NC + 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(module.netG(x), g(x))
        assert all(torch.equal(a[-1], b[-1]) for a, b in zip(module.netD(cond), d(cond), strict=True))
    joint = build_module(compose_config(["stage=joint", f"stage.init_from={ckpt}", *stored],
                                        tmp_path / "joint"))
    with torch.no_grad():
        assert torch.equal(joint.netG(x), g(x))
    labels, insts = _label_maps(tmp_path)
    argv = ["task=predict", f"task.ckpt_path={ckpt}"]
    pred_cfg = compose_config([*argv, *from_checkpoint(argv), f"dataset.predict_label_dir={labels}",
                               f"dataset.predict_inst_dir={insts}"], tmp_path / "predict")
    written = predict(pred_cfg)
    assert len(written) == 1 and os.path.isfile(written[0])
    argv = ["task=export", f"task.ckpt_path={ckpt}"]
    result = export(compose_config([*argv, *from_checkpoint(argv), "task.probe_size=[16,16]"], tmp_path / "exp"))
    assert result["path"].endswith("generator.pt") and result["max_abs_diff"] <= 1e-4


def test_wrong_shape_and_missing_key_are_one_line_errors_naming_the_key(tmp_path) -> None:
    g = OfficialGlobal(LABEL_NC + 1)
    path = save(g, tmp_path / "latest_net_G.pth")
    state = torch.load(path)
    state["model.1.bias"] = torch.zeros(5)
    torch.save(state, path)
    with pytest.raises(OfficialWeightsError) as err:
        run_import(tmp_path, "pix2pixhd", [path])
    assert "wrong shapes: model.1.bias (5,) (expected (4,))" in str(err.value) and "\n" not in str(err.value)
    state = torch.load(save(g, tmp_path / "latest_net_G.pth"))
    del state["model.10.conv_block.5.weight"]
    state["model.99.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(OfficialWeightsError, match=r"missing keys: model\.10\.conv_block\.5\.weight; left-over "
                                                   r"keys: model\.99\.weight") as err:
        run_import(tmp_path, "pix2pixhd", [path])
    assert "\n" not in str(err.value)


def test_an_official_file_as_a_checkpoint_names_the_import(tmp_path) -> None:
    path = save(OfficialGlobal(LABEL_NC + 1), tmp_path / "latest_net_G.pth")
    with pytest.raises(StageError, match=r"official pix2pixHD weights file.*task=import_official model=pix2pixhd"):
        read_checkpoint(path)


# ------------------------------------------------------------------------ LST
# official r31 shapes (libs/models.py encoder3 / decoder3, libs/Matrix.py MulLayer('r31'), matrix 32)
R31_ENCODER = {"conv1": (3, 3, 1), "conv2": (64, 3, 3), "conv3": (64, 64, 3), "conv4": (128, 64, 3),
               "conv5": (128, 128, 3), "conv6": (256, 128, 3)}
R31_DECODER = {"conv7": (128, 256, 3), "conv8": (128, 128, 3), "conv9": (64, 128, 3), "conv10": (64, 64, 3),
               "conv11": (3, 64, 3)}


def official_lst_r31(folder: Path) -> list[str]:
    g = torch.Generator().manual_seed(0)

    def convs(table: dict) -> dict:
        out = {}
        for name, (cout, cin, k) in table.items():
            out[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
            out[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.01
        return out

    cnn = {"convs.0": (128, 256, 3), "convs.2": (64, 128, 3), "convs.4": (32, 64, 3)}
    transform = {f"{net}.{k}": v for net in ("snet", "cnet") for k, v in convs(cnn).items()}
    for net in ("snet", "cnet"):
        transform[f"{net}.fc.weight"] = torch.randn(1024, 1024, generator=g) * 0.03
        transform[f"{net}.fc.bias"] = torch.randn(1024, generator=g) * 0.01
    transform.update({k: v for k, v in convs({"compress": (32, 256, 1), "unzip": (256, 32, 1)}).items()})
    files = {"vgg_r31.pth": convs(R31_ENCODER), "dec_r31.pth": convs(R31_DECODER), "r31.pth": transform}
    for name, state in files.items():
        torch.save(state, folder / name)
    return [str(folder / n) for n in files]


def test_lst_models_folder_imports_and_stylizes_like_the_source_networks(tmp_path) -> None:
    from networks.lst import LinearStylizer, LinearTransform, VGGDecoder, VGGEncoder
    from tasks.lst.stylize import load_stylizer

    models = tmp_path / "models"
    models.mkdir()
    files = official_lst_r31(models)
    ckpt = run_import(tmp_path, "lst", [str(models)], "task.level=r31")
    meta = read_checkpoint(ckpt)["condsynth"]
    assert meta["stage"] == "transform" and rebuilt_config(ckpt).model.level == "r31"
    reference = LinearStylizer(VGGEncoder("r31", weights=None), LinearTransform(256), VGGDecoder("r31"))
    for part, path in zip((reference.encoder, reference.decoder, reference.transform), files, strict=True):
        part.load_state_dict(torch.load(path))
    reference.eval()
    argv = ["task=stylize", f"task.ckpt_path={ckpt}"]
    cfg = compose_config(["model=lst", *TINY_LST[1:], *argv, *from_checkpoint(argv), "task.content=x",
                          "task.style=y"], tmp_path / "stylize", tiny=False)
    stylizer = load_stylizer(cfg)
    g = torch.Generator().manual_seed(1)
    content, style = torch.rand(1, 3, 20, 28, generator=g), torch.rand(1, 3, 16, 16, generator=g)
    with torch.no_grad():
        assert torch.equal(stylizer(content, style), reference(content, style))


def test_an_official_lst_file_as_a_checkpoint_names_the_import(tmp_path) -> None:
    path = official_lst_r31(tmp_path)[2]
    with pytest.raises(StageError, match=r"official LinearStyleTransfer weights file.*task=import_official model=lst"):
        read_checkpoint(path)


def test_lst_mixed_levels_are_refused(tmp_path) -> None:
    files = official_lst_r31(tmp_path)
    state = torch.load(files[2])
    state["compress.weight"] = torch.zeros(32, 512, 1, 1)
    torch.save(state, files[2])
    with pytest.raises(OfficialWeightsError, match="mix levels"):
        run_import(tmp_path, "lst", files)


def test_pix2pixhd_onnx_export_matches_eager(tmp_path) -> None:
    pytest.importorskip("onnx", reason="onnx is optional (pip install 'condsynth[export]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime is optional (pip install 'condsynth[export]')")
    from tasks.export import export

    ckpt = run_import(tmp_path, "pix2pixhd", [save(OfficialGlobal(LABEL_NC + 1), tmp_path / "latest_net_G.pth")])
    argv = ["task=export", f"task.ckpt_path={ckpt}"]
    result = export(compose_config([*argv, *from_checkpoint(argv), "task.format=onnx", "task.probe_size=[12,20]"],
                                   tmp_path / "exp"))
    assert result["path"].endswith("generator.onnx") and os.path.isfile(result["path"])
    assert [c["size"] for c in result["checks"]] == [[12, 20], [16, 28]] and result["max_abs_diff"] <= 1e-4
