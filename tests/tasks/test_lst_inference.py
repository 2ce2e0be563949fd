"""LST inference: task=stylize (content x style, alpha, mixing, short side, photoreal), task=stylize_video and
task=export, on a tiny r31 checkpoint (random VGG weights, 16..32 px images, 4-frame videos)."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import open_dict
from PIL import Image

from datamodules.video import VideoWriter
from lightning_modules.factory import build_module
from lightning_modules.stages import StageError
from networks.lst import LinearStylizer
from tasks.config import ConfigError, validate_config
from tasks.lst.export import export
from tasks.lst.photoreal import guided_filter
from tasks.lst.stylize import (
    content_style_grid,
    load_stylizer,
    read_image,
    style_codes,
    stylize,
    stylize_one,
)
from tasks.lst.stylize_video import stylize_video, to_tensor, to_uint8
from tests.conftest import REPO_ROOT, TINY_LST, compose_config
from tests.tasks._video import read_video, write_video

LEVEL = "r31"  # the lighter model keeps the tests fast; stride 4


pytestmark = pytest.mark.usefixtures("one_thread")


def lst_config(run_dir, *overrides: str, level: str = LEVEL):
    return compose_config([*TINY_LST, f"model.level={level}", *overrides], run_dir, tiny=False)


def save_checkpoint(module, path: Path) -> str:
    """What Lightning's checkpoint holds for inference: the state dict and condsynth's metadata."""
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return str(path)


def make_trained_like(module) -> None:
    """Random weights that pass content structure through, as trained ones do (the defaults do not: PyTorch's
    default decoder init shrinks the signal ~2x per layer and the random matrices T are ~0, so every output would be
    one flat colour). The decoder is Kaiming-initialised with an RGB layer of gain 0.1 and bias 0.5 (outputs spread
    inside (0, 1), not clamped), and the transformation's covariance nets give T_s, T_c = I + a style/content-
    dependent part."""
    names = [layer[0] for layer in module.decoder._layers]
    with torch.no_grad():
        for name in names:
            conv = getattr(module.decoder, name)
            torch.nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            conv.bias.zero_()
        rgb = getattr(module.decoder, names[-1])
        rgb.weight.mul_(0.1)
        rgb.bias.fill_(0.5)
        for net in (module.transform.snet, module.transform.cnet):
            net.fc.weight.mul_(10.0)
            net.fc.bias.copy_(torch.eye(net.matrix_size).flatten())


@pytest.fixture(scope="module")
def lst_ckpt(tmp_path_factory) -> str:
    """A stage-transform LST checkpoint (random VGG encoder, see :func:`make_trained_like`)."""
    folder = tmp_path_factory.mktemp("lst_ckpt")
    torch.manual_seed(0)
    module = build_module(lst_config(folder / "run", "stage=transform"), for_inference=True)
    make_trained_like(module)
    return save_checkpoint(module, folder / "transform.ckpt")


@pytest.fixture(scope="module")
def stylizer(lst_ckpt, tmp_path_factory) -> LinearStylizer:
    cfg = lst_config(tmp_path_factory.mktemp("load"), "task=stylize", f"task.ckpt_path={lst_ckpt}")
    return load_stylizer(cfg, "cpu")


def scene(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth gradient with a rectangle: an RGB uint8 'photo'."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([yy, xx, 1 - yy], -1) * rng.uniform(0.3, 1, 3)
    img[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = rng.uniform(0, 1, 3)
    return (img * 255).clip(0, 255).astype(np.uint8)


def texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = ((xx + yy * (seed + 1)) // 3) % 2
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    return ((a * stripes[..., None] + b * (1 - stripes[..., None])) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    (root / "content").mkdir()
    (root / "style").mkdir()
    Image.fromarray(scene(24, 32, 0)).save(root / "content" / "a.png")
    Image.fromarray(scene(22, 18, 1)).save(root / "content" / "b.png")  # not a multiple of the stride
    Image.fromarray(texture(16, 16, 0)).save(root / "style" / "s1.png")
    Image.fromarray(texture(20, 16, 1)).save(root / "style" / "s2.png")
    return {"root": root, "content": root / "content", "style": root / "style"}


def load_png(path) -> torch.Tensor:
    with Image.open(path) as img:
        return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 255


def quantized(x: torch.Tensor) -> torch.Tensor:
    """What a PNG written by save_image holds."""
    return torch.from_numpy(to_uint8(x)).permute(2, 0, 1).float() / 255


def stylize_cfg(tmp_path, ckpt, content, style, *extra: str):
    return lst_config(tmp_path / "run", "task=stylize", f"task.ckpt_path={ckpt}", f"task.content={content}",
                      f"task.style={style}", *extra)


# ------------------------------------------------------------------------------------------- stylize
def test_stylize_writes_every_pair_and_a_grid(lst_ckpt, stylizer, inputs, tmp_path) -> None:
    cfg = stylize_cfg(tmp_path, lst_ckpt, inputs["content"], inputs["style"], "task.grid_cell=32")
    validate_config(cfg)  # as run.py does
    result = hydra.utils.get_method(cfg.task.fn)(cfg)
    out = Path(cfg.paths.prediction_dir)
    names = ["a_x_s1.png", "a_x_s2.png", "b_x_s1.png", "b_x_s2.png"]
    assert result["outputs"] == [str(out / n) for n in names]
    codes = {n: style_codes(stylizer, [read_image(str(inputs["style"] / f"{n}.png"))])[0] for n in ("s1", "s2")}
    for content_name in ("a", "b"):
        content = read_image(str(inputs["content"] / f"{content_name}.png"))
        for style_name, code in codes.items():
            png = load_png(out / f"{content_name}_x_{style_name}.png")
            assert png.shape == content.shape[1:]  # same size as its content
            expected = quantized(stylize_one(stylizer, content, code))
            assert (png - expected).abs().max() <= 1.5 / 255, f"{content_name}_x_{style_name} is not that pair"
    assert not torch.equal(load_png(out / "a_x_s1.png"), load_png(out / "a_x_s2.png"))
    # grid: (2 contents + header row) x (2 styles + header column), 32 px cells, 2 px padding
    grid = load_png(result["grid"])
    assert grid.shape == (3, 3 * 34 + 2, 3 * 34 + 2)
    assert torch.all(grid[:, 2:34, 2:34] == 1.0)  # top-left corner cell is blank
    first_style = grid[:, 2:34, 36:68]
    first_content = grid[:, 36:68, 2:34]
    assert first_style.std() > 0.05 and first_content.std() > 0.05
    cells = content_style_grid([torch.zeros(3, 8, 8)] * 2, [torch.zeros(3, 8, 8)] * 3, [[torch.zeros(3, 8, 8)] * 3] * 2,
                               cell=16)
    assert cells.shape == (3, 3 * 18 + 2, 4 * 18 + 2)  # rows = contents + 1, columns = styles + 1


def test_alpha_zero_is_the_reconstruction_and_one_the_full_stylisation(stylizer, inputs, lst_ckpt, tmp_path) -> None:
    content = read_image(str(inputs["content"] / "a.png"))  # 24x32: a multiple of the stride
    style = read_image(str(inputs["style"] / "s1.png"))
    code = style_codes(stylizer, [style])[0]
    with torch.no_grad():
        reconstruction = stylizer.decoder(stylizer.encoder(content)).clamp(0, 1)
        full = stylizer(content, style)
    zero, one, half = (stylize_one(stylizer, content, code, a) for a in (0.0, 1.0, 0.5))
    assert torch.allclose(zero, reconstruction, atol=1e-6)
    assert torch.allclose(one, full, atol=1e-6)
    assert (half - zero).abs().max() > 1e-3 and (half - one).abs().max() > 1e-3
    assert (one - zero).abs().max() > 1e-2  # the style does something
    # through the task: alpha=0 writes the reconstruction
    cfg = stylize_cfg(tmp_path, lst_ckpt, inputs["content"] / "a.png", inputs["style"] / "s1.png", "task.alpha=0")
    result = stylize(cfg)
    assert (load_png(result["outputs"][0]) - quantized(reconstruction)).abs().max() <= 1.5 / 255


def test_style_mixing(stylizer, inputs, lst_ckpt, tmp_path) -> None:
    content = read_image(str(inputs["content"] / "b.png"))
    styles = [read_image(str(inputs["style"] / n)) for n in ("s1.png", "s2.png")]
    first = stylize_one(stylizer, content, style_codes(stylizer, styles[:1])[0])
    second = stylize_one(stylizer, content, style_codes(stylizer, styles[1:])[0])
    only_first = stylize_one(stylizer, content, style_codes(stylizer, styles, [1.0, 0.0])[0])
    half = stylize_one(stylizer, content, style_codes(stylizer, styles, [0.5, 0.5])[0])
    assert torch.allclose(only_first, first, atol=1e-6)
    assert (half - first).abs().max() > 1e-3 and (half - second).abs().max() > 1e-3
    # mixing the codes = mixing the transformed features (the paper's interpolation), decoded once
    with torch.no_grad():
        padded = F.pad(content, (0, 2, 0, 2), mode="replicate")  # 22x18 -> 24x20
        feat = stylizer.encoder(padded)
        mixed = sum(0.5 * stylizer.transform.apply_style(feat, *stylizer.style_code(s)) for s in styles)
        expected = stylizer.decoder(mixed)[..., :22, :18].clamp(0, 1)
    assert torch.allclose(half, expected, atol=1e-5)
    # through the task: one mixed column
    cfg = stylize_cfg(tmp_path, lst_ckpt, inputs["content"] / "b.png", inputs["style"],
                      "task.style_weights=[0.5,0.5]", "task.grid_cell=16")
    result = stylize(cfg)
    assert [os.path.basename(p) for p in result["outputs"]] == ["b_x_mix.png"]
    assert (load_png(result["outputs"][0]) - quantized(half)).abs().max() <= 1.5 / 255
    assert load_png(result["grid"]).shape == (3, 2 * 18 + 2, 2 * 18 + 2)


def test_short_side_resizes_content_and_style(lst_ckpt, inputs, tmp_path) -> None:
    cfg = stylize_cfg(tmp_path, lst_ckpt, inputs["content"], inputs["style"] / "s1.png", "task.short_side=16",
                      "task.grid=false")
    result = stylize(cfg)
    sizes = [load_png(p).shape[1:] for p in result["outputs"]]
    assert sizes == [(16, 21), (20, 16)]  # 24x32 -> 16x21, 22x18 -> 20x16 (aspect kept)
    assert result["grid"] is None


def test_photoreal_filter_is_edge_preserving(stylizer, inputs, lst_ckpt, tmp_path) -> None:
    # content: two flat halves with a vertical edge, and a little sensor noise (std 0.02 << sqrt(eps) = 0.1)
    g = torch.Generator().manual_seed(0)
    content = torch.full((1, 3, 32, 32), 0.2)
    content[..., 16:] = 0.8
    content = (content + 0.02 * torch.randn(content.shape, generator=g)).clamp(0, 1)
    style = read_image(str(inputs["style"] / "s2.png"))
    code = style_codes(stylizer, [style])[0]
    plain = stylize_one(stylizer, content, code)
    real = stylize_one(stylizer, content, code, photoreal=(4, 1e-2))
    assert real.shape == plain.shape and (real - plain).abs().max() > 1e-3
    assert real.min() >= 0 and real.max() <= 1
    flat = [(slice(None), slice(None), slice(4, 28), slice(2, 12)), (slice(None), slice(None), slice(4, 28), slice(20, 30))]
    for region in flat:  # smoother inside the flat regions of the content
        assert real[region].std(dim=(-2, -1)).mean() < 0.7 * plain[region].std(dim=(-2, -1)).mean()
    # edge preserving: a noisy copy of the content keeps its step after the guided filter, a box blur smears it
    noisy = (content + 0.1 * torch.randn(content.shape, generator=g)).clamp(0, 1)
    guided = guided_filter(noisy, content, radius=4, eps=1e-2)
    box = F.avg_pool2d(F.pad(noisy, (4, 4, 4, 4), mode="reflect"), 9, stride=1)
    step = lambda x: float(x[..., 16].mean() - x[..., 15].mean())  # noqa: E731
    assert step(guided) > 0.5 and step(guided) > 3 * step(box)
    # through the task
    cfg = stylize_cfg(tmp_path, lst_ckpt, inputs["content"] / "a.png", inputs["style"] / "s1.png",
                      "task.photoreal=true", "task.guided_filter.radius=3", "task.grid=false")
    png = load_png(stylize(cfg)["outputs"][0])
    a = read_image(str(inputs["content"] / "a.png"))
    expected = stylize_one(stylizer, a, style_codes(stylizer, [read_image(str(inputs["style"] / "s1.png"))])[0],
                           photoreal=(3, 1e-2))
    assert (png - quantized(expected)).abs().max() <= 1.5 / 255


@pytest.mark.slow
def test_stylize_with_a_checkpoint_from_training(inputs, tmp_path_factory) -> None:
    """The real chain: task=train stage=decoder, then stage=transform from it (1 batch each), then task=stylize on
    the transform run's last.ckpt (the run keeps the default stage=decoder: the checkpoint's stage is used)."""
    from tasks.train import train

    root = tmp_path_factory.mktemp("trained_lst")
    quick = ["callbacks.sample_grid.every_n_steps=0", "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0",
             "trainer.limit_train_batches=1"]
    train(lst_config(root / "decoder", "stage=decoder", *quick))
    decoder_ckpt = root / "decoder" / "checkpoints" / "last.ckpt"
    train(lst_config(root / "transform", "stage=transform", f"stage.init_from={decoder_ckpt}", *quick))
    ckpt = root / "transform" / "checkpoints" / "last.ckpt"
    cfg = stylize_cfg(root, ckpt, inputs["content"] / "b.png", inputs["style"], "task.grid_cell=16")
    validate_config(cfg)
    result = hydra.utils.get_method(cfg.task.fn)(cfg)
    assert [os.path.basename(p) for p in result["outputs"]] == ["b_x_s1.png", "b_x_s2.png"]
    assert load_png(result["outputs"][0]).shape == (3, 22, 18)


# ------------------------------------------------------------------------------------------- video
@pytest.fixture
def count_style_code(monkeypatch):
    calls = []
    original = LinearStylizer.style_code

    def counting(self, style):
        calls.append(tuple(style.shape))
        return original(self, style)

    monkeypatch.setattr(LinearStylizer, "style_code", counting)
    return calls


@pytest.mark.parametrize("as_folder", [False, True], ids=["video_file", "frame_folder"])
def test_video_round_trip(as_folder, stylizer, lst_ckpt, inputs, tmp_path, count_style_code) -> None:
    frames = [scene(16, 24, 10 + i) for i in range(4)]
    if as_folder:
        src = tmp_path / "frames"
        src.mkdir()
        for i, f in enumerate(frames):
            Image.fromarray(f).save(src / f"frame_{i + 1}.png")  # frame_1..frame_4: natural order
        extra = ["task.fps=5"]
    else:
        src = write_video(frames, str(tmp_path / "clip.mp4"), fps=10)
        extra = []
    cfg = lst_config(tmp_path / "run", "task=stylize_video", f"task.ckpt_path={lst_ckpt}", f"task.input={src}",
                     f"task.style={inputs['style'] / 's1.png'}", "task.save_frames=true", *extra)
    result = stylize_video(cfg)
    assert len(count_style_code) == 1  # the style code is computed once for the whole clip
    name = "frames" if as_folder else "clip"
    assert result["output"] == os.path.join(cfg.paths.prediction_dir, f"{name}_stylized.mp4")
    assert result["frames"] == 4 and result["fps"] > 0 and result["size"] == (16, 24)
    out_frames, fps = read_video(result["output"])
    assert len(out_frames) == 4 and all(f.shape == (16, 24, 3) for f in out_frames)
    assert float(fps) == (5 if as_folder else 10)
    # each saved frame is that input frame stylised with the style (the decoded input, for a lossy video)
    inputs_seen = frames if as_folder else read_video(str(src))[0]
    style = read_image(str(inputs["style"] / "s1.png"))
    saved = sorted(Path(result["frames_dir"]).glob("*.png"))
    assert len(saved) == 4
    for frame, png_path, decoded in zip(inputs_seen, saved, out_frames, strict=True):
        with torch.no_grad():
            expected = stylizer(to_tensor(frame), style)
        png = load_png(png_path)
        assert (png - quantized(expected)).abs().max() <= 1.5 / 255
        # the video holds the same frames up to the codec's loss
        assert (torch.from_numpy(decoded).permute(2, 0, 1).float() / 255 - png).abs().mean() < 0.05


def test_video_writer_pads_odd_sizes_when_asked_and_keeps_the_frame_rate(tmp_path) -> None:
    frames = [scene(15, 23, i) for i in range(3)]
    writer = VideoWriter(str(tmp_path / "odd.mkv"), 12, odd_size="pad")
    with pytest.warns(UserWarning, match="15x23; yuv420p video needs even sizes"):
        for f in frames:
            writer.write(f)
    path = writer.close()
    back, fps = read_video(path)
    assert len(back) == 3 and back[0].shape == (16, 24, 3) and float(fps) == 12
    # the same picture up to the codec's loss (4:2:0 chroma on a 15x23 frame is coarse): far closer than a flip of it
    error = np.abs(back[0][:15, :23].astype(float) - frames[0]).mean()
    assert error < 20 and error < 0.5 * np.abs(back[0][:15, :23].astype(float) - frames[0][::-1, ::-1]).mean()
    assert not list(tmp_path.glob(".*partial*"))  # the temporary file was renamed


def test_video_writer_keeps_odd_sizes_by_default(tmp_path) -> None:
    """Issue 21: a 321x241 video came out 322x242. Odd sizes are now written as they are (H.264 4:4:4)."""
    frames = [scene(15, 23, i) for i in range(3)]
    path = write_video(frames, str(tmp_path / "odd.mp4"), fps=12)
    back, fps = read_video(path)
    assert len(back) == 3 and back[0].shape == (15, 23, 3) and float(fps) == 12
    assert np.abs(back[0].astype(float) - frames[0]).mean() < 12


def _video_with_audio(path: str, frames: list, fps: int = 10, rate: int = 16000) -> str:
    """A test video whose audio track is a 440 Hz tone as long as the frames."""
    seconds = len(frames) / fps
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)
    writer = VideoWriter(path, fps, audio=(tone, rate))
    for f in frames:
        writer.write(f)
    return writer.close()


def test_stylize_video_keeps_size_rate_and_audio(lst_ckpt, inputs, tmp_path, capsys) -> None:
    """Issue 21: a 321x241 video with sound came out 322x242 and silent, its summary saying 241x321. Now the output
    has the input's size, frame rate and audio track, and the summary states the size written (width x height)."""
    import av

    frames = [np.asarray(Image.fromarray(scene(60, 80, i)).resize((321, 241))) for i in range(3)]
    src = _video_with_audio(str(tmp_path / "clip.mp4"), frames, fps=10)
    cfg = lst_config(tmp_path / "run", "task=stylize_video", f"task.ckpt_path={lst_ckpt}", f"task.input={src}",
                     f"task.style={inputs['style'] / 's1.png'}")
    result = stylize_video(cfg)
    out_frames, fps = read_video(result["output"])
    assert len(out_frames) == 3 and out_frames[0].shape == (241, 321, 3) and float(fps) == 10
    assert result["written_size"] == (241, 321) and result["audio"] == "audio copied (aac)"
    with av.open(result["output"]) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        assert abs(sum(f.samples for f in c.decode(audio=0)) / 16000 - 0.3) < 0.1
    assert "321x241 (width x height, yuv444p), 10 frames/s, audio copied (aac)" in capsys.readouterr().out


def test_stylize_inputs_shrink_to_the_working_size_and_a_pixel_cap_stops_large_ones(lst_ckpt, inputs,
                                                                                   tmp_path) -> None:
    """Issue 16 §5: a 4000x3000 style photo was stylised at full size (killed at 12.5 GB). Inputs larger than
    task.working_size are shrunk to it (small ones are kept), and images/frames above task.max_pixels stop with one
    line naming the file, its size and the key, before anything is decoded."""
    big = tmp_path / "big.png"
    Image.fromarray(np.asarray(Image.fromarray(scene(30, 40, 1)).resize((120, 90)))).save(big)
    cfg = lst_config(tmp_path / "run", "task=stylize", f"task.ckpt_path={lst_ckpt}", f"task.content={big}",
                     f"task.style={big}", "task.working_size=45", "task.grid=false")
    result = stylize(cfg)
    assert Image.open(result["outputs"][0]).size == (60, 45)       # 120x90 -> shorter side 45
    cfg = lst_config(tmp_path / "run2", "task=stylize", f"task.ckpt_path={lst_ckpt}", f"task.content={big}",
                     f"task.style={inputs['style'] / 's1.png'}", "task.grid=false")
    assert Image.open(stylize(cfg)["outputs"][0]).size == (120, 90)  # under the default working size: kept
    video = _video_with_audio(str(tmp_path / "v.mp4"), [np.zeros((90, 120, 3), np.uint8)] * 2)
    capped = r"is 120x90 \(0.0 megapixels\), above the cap of 0.01 megapixels \(task.max_pixels=10000\)"
    cfg = lst_config(tmp_path / "run3", "task=stylize", f"task.ckpt_path={lst_ckpt}", f"task.content={big}",
                     f"task.style={big}", "task.max_pixels=10000")
    with pytest.raises(ValueError, match=f"big.png {capped}"):
        stylize(cfg)
    cfg = lst_config(tmp_path / "run4", "task=stylize_video", f"task.ckpt_path={lst_ckpt}", f"task.input={video}",
                     f"task.style={inputs['style'] / 's1.png'}", "task.max_pixels=10000")
    with pytest.raises(ValueError, match=f"task.input=.*v.mp4 {capped}"):
        stylize_video(cfg)


# ------------------------------------------------------------------------------------------- export
def _check_export(fmt: str, lst_ckpt, stylizer, tmp_path, runner) -> None:
    cfg = lst_config(tmp_path / "run", "task=export", f"task.ckpt_path={lst_ckpt}", f"task.format={fmt}",
                     "task.probe_size=[22,30]")
    result = export(cfg)
    ext = ".pt" if fmt == "torchscript" else ".onnx"
    assert result["path"] == os.path.join(str(cfg.paths.run_dir), f"stylizer{ext}") and os.path.isfile(result["path"])
    assert result["max_abs_diff"] <= 1e-4 and len(result["checks"]) == 2
    # an independent load of the file, on a new pair of other sizes
    g = torch.Generator().manual_seed(3)
    content, style = torch.rand(1, 3, 27, 33, generator=g), torch.rand(1, 3, 20, 36, generator=g)
    for alpha in (1.0, 0.3):
        with torch.no_grad():
            eager = stylizer(content, style, alpha)
        out = runner(result["path"], content, style, alpha)
        assert out.shape == eager.shape
        assert (out - eager).abs().max() <= 1e-4


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_torchscript_matches_eager(lst_ckpt, stylizer, tmp_path) -> None:
    def run(path, content, style, alpha):
        module = torch.jit.load(path)
        with torch.no_grad():
            return module(content, style, torch.tensor(alpha))

    _check_export("torchscript", lst_ckpt, stylizer, tmp_path, run)


def test_export_onnx_matches_eager(lst_ckpt, stylizer, tmp_path) -> None:
    pytest.importorskip("onnx", reason="onnx is optional (not a condsynth dependency)")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is optional (not a condsynth dependency)")

    def run(path, content, style, alpha):
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feeds = {"content": content.numpy(), "style": style.numpy(), "alpha": np.asarray(alpha, np.float32)}
        return torch.from_numpy(session.run(None, feeds)[0])

    _check_export("onnx", lst_ckpt, stylizer, tmp_path, run)


# ------------------------------------------------------------------------------------------- bad inputs
def with_task(cfg, **task):
    """A copy of ``cfg`` with ``task.<key>`` values replaced (composing again per case is slow)."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for key, value in task.items():
            cfg.task[key] = value
    return cfg


def test_bad_image_inputs(lst_ckpt, inputs, tmp_path) -> None:
    c, s = str(inputs["content"]), str(inputs["style"])
    base = stylize_cfg(tmp_path, lst_ckpt, c, s)
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=f"task.content={missing} does not exist"):
        stylize(with_task(base, content=missing))
    with pytest.raises(FileNotFoundError, match=f"task.style={missing} does not exist"):
        stylize(with_task(base, style=missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"task.style={empty} contains no images"):
        stylize(with_task(base, style=str(empty)))
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(ValueError, match=f"could not read image {corrupt}"):
        stylize(with_task(base, content=str(corrupt)))
    with pytest.raises(ValueError, match=f"could not read image {corrupt}"):
        stylize(with_task(base, style=str(corrupt)))
    for alpha in (1.5, -0.1, "strong"):
        with pytest.raises(ValueError, match=r"task.alpha=.* must be (in \[0, 1\]|a number)"):
            stylize(with_task(base, alpha=alpha))
    with pytest.raises(ValueError, match="3 weights but task.style holds 2 style image"):
        stylize(with_task(base, style_weights=[1, 2, 3]))
    with pytest.raises(ValueError, match="must be >= 0"):
        stylize(with_task(base, style_weights=[1, -1]))
    with pytest.raises(ConfigError, match="needs task.content"):
        stylize(lst_config(tmp_path / "run", "task=stylize", f"task.ckpt_path={lst_ckpt}", f"task.style={s}"))
    tiny = tmp_path / "tiny.png"
    Image.fromarray(scene(6, 12, 0)).save(tiny)
    with pytest.raises(ValueError, match=f"image {tiny} is 6x12; the model needs at least 8 pixels"):
        stylize(with_task(base, content=str(tiny)))
    with pytest.raises(ValueError, match="task.guided_filter.radius=0"):
        stylize(with_task(base, photoreal=True, guided_filter={"radius": 0, "eps": 0.01}))


def test_bad_video_inputs(lst_ckpt, inputs, tmp_path) -> None:
    base = lst_config(tmp_path / "run", "task=stylize_video", f"task.ckpt_path={lst_ckpt}",
                      f"task.input={inputs['content']}", f"task.style={inputs['style'] / 's1.png'}")
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(ValueError, match=f"cannot open video task.input={fake}"):
        stylize_video(with_task(base, input=str(fake)))
    gone = tmp_path / "gone.mp4"
    with pytest.raises(FileNotFoundError, match=f"task.input={gone} does not exist"):
        stylize_video(with_task(base, input=str(gone)))
    empty = tmp_path / "no_frames"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"task.input={empty} contains no images"):
        stylize_video(with_task(base, input=str(empty)))
    with pytest.raises(ValueError, match=r"task.alpha=2 must be in \[0, 1\]"):
        stylize_video(with_task(base, alpha=2))
    with pytest.raises(ValueError, match="a video takes one style"):
        stylize_video(with_task(base, style=str(inputs["style"])))
    clip = write_video([scene(16, 16, 0)] * 2, str(tmp_path / "clip.mp4"), fps=5)
    with pytest.raises(ValueError, match=f"task.output={clip} is the input video"):
        stylize_video(with_task(base, input=clip, output=clip))
    # frames of different sizes in one folder
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(scene(16, 16, 0)).save(mixed / "0.png")
    Image.fromarray(scene(16, 20, 1)).save(mixed / "1.png")
    with pytest.raises(ValueError, match=f"frame {mixed / '1.png'} is 16x20"):
        stylize_video(with_task(base, input=str(mixed)))


def test_wrong_checkpoints_and_models(lst_ckpt, inputs, tmp_path) -> None:
    c, s = inputs["content"] / "a.png", inputs["style"] / "s1.png"
    # a pix2pixHD checkpoint with model=lst
    p2p = save_checkpoint(build_module(compose_config([], tmp_path / "p2p")), tmp_path / "pix2pixhd.ckpt")
    with pytest.raises(StageError, match="is a 'pix2pixhd' checkpoint, not a Linear Style Transfer one"):
        stylize(stylize_cfg(tmp_path, p2p, c, s))
    with pytest.raises(StageError, match="'pix2pixhd' checkpoint"):
        export(lst_config(tmp_path / "run", "task=export", f"task.ckpt_path={p2p}"))
    # task=stylize with the default model (pix2pixhd): stopped at start-up by the task's `models`
    cfg = compose_config(["task=stylize", f"task.ckpt_path={lst_ckpt}", f"task.content={c}", f"task.style={s}"],
                         tmp_path / "run")
    with pytest.raises(ConfigError, match="task=stylize does not run model=pix2pixhd; it runs model=lst"):
        validate_config(cfg)
    # the level comes from the checkpoint, whatever the run's model.level says
    assert load_stylizer(lst_config(tmp_path / "lvl", "task=stylize", f"task.ckpt_path={lst_ckpt}",
                                    "model.level=r41"), "cpu").encoder.level == LEVEL
    # an LST checkpoint of the decoder stage
    decoder_ckpt = save_checkpoint(build_module(lst_config(tmp_path / "dec", "stage=decoder"), for_inference=True),
                                   tmp_path / "decoder.ckpt")
    with pytest.raises(StageError, match="untrained"):
        stylize(stylize_cfg(tmp_path, decoder_ckpt, c, s))
    with pytest.raises(FileNotFoundError, match="task.ckpt_path="):
        stylize(stylize_cfg(tmp_path, tmp_path / "missing.ckpt", c, s))
    with pytest.raises(ValueError, match="task.format=keras is unknown"):
        export(lst_config(tmp_path / "run", "task=export", f"task.ckpt_path={lst_ckpt}", "task.format=keras"))


def test_start_up_checks(lst_ckpt, inputs, tmp_path) -> None:
    """run.py's validate_config stops a run before anything loads."""
    c, s = inputs["content"], inputs["style"] / "s1.png"
    with pytest.raises(ConfigError, match="task=stylize needs task.content="):
        validate_config(lst_config(tmp_path / "r", "task=stylize", f"task.ckpt_path={lst_ckpt}", f"task.style={s}"))
    with pytest.raises(ConfigError, match="task=stylize_video needs task.ckpt_path="):
        validate_config(lst_config(tmp_path / "r", "task=stylize_video", f"task.input={c}", f"task.style={s}"))
    # task=export runs every model (task.format=safetensors); the network formats are the paper's exporter's
    validate_config(compose_config(["task=export", "model=edn", f"task.ckpt_path={lst_ckpt}"], tmp_path / "r"))
    with pytest.raises(ConfigError, match="task=cluster_features does not run model=lst"):
        validate_config(lst_config(tmp_path / "r", "task=cluster_features", f"task.ckpt_path={lst_ckpt}"))
    with pytest.raises(ConfigError, match="/no/such.ckpt does not exist"):
        validate_config(lst_config(tmp_path / "r", "task=export", "task.ckpt_path=/no/such.ckpt"))


def test_bench_lst_rows(capsys) -> None:
    sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
    try:
        from bench_lst import format_table, run
    finally:
        sys.path.remove(os.path.join(REPO_ROOT, "scripts"))
    rows = run(levels=("r31",), sizes=(16,), frames=1, warmup=1)
    assert [(r["level"], r["resolution"]) for r in rows] == [("r31", "16x16")]
    assert rows[0]["fps"] > 0 and rows[0]["ms_per_frame"] > 0
    table = format_table(rows)
    assert table.splitlines()[0].startswith("| level") and "r31" in table


def test_task_test_scores_lst_checkpoints_with_the_module_metrics(lst_ckpt, tmp_path) -> None:
    """task=test on LST: stage transform reports style/content/loss (loss = style + content), stage decoder reports
    reconstruction MSE and PSNR (PSNR = -10 log10 of the clamped MSE, so at least -10 log10 of the recon MSE)."""
    import json

    from tasks.evaluate import test as run_test

    cfg = lst_config(tmp_path / "t", "task=test", "stage=transform", f"task.ckpt_path={lst_ckpt}", "logger=none")
    values = run_test(cfg)
    # the test_step's terms, then the paper's protocol (tasks/lst/metrics.py): raw content/style distances, frames/s
    assert set(values) == {"loss", "style", "content", "content_loss", "style_loss", "fps_256", "fps_512"}
    assert values["content_loss"] > 0 and values["style_loss"] > 0 and values["fps_256"] > 0 and values["fps_512"] > 0
    assert values["loss"] == pytest.approx(values["style"] + values["content"], rel=1e-4)
    assert values["style"] > 0 and values["content"] > 0
    report = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert report["metrics"] == pytest.approx(values) and report["stage"] == "transform"
    torch.manual_seed(0)
    decoder = build_module(lst_config(tmp_path / "d", "stage=decoder"), for_inference=True)
    make_trained_like(decoder)
    dec_ckpt = save_checkpoint(decoder, tmp_path / "decoder.ckpt")
    values = run_test(lst_config(tmp_path / "d", "task=test", "stage=decoder", f"task.ckpt_path={dec_ckpt}",
                                 "logger=none"))
    assert {"recon", "psnr", "loss"} <= set(values)
    assert values["psnr"] >= -10 * np.log10(values["recon"]) - 1e-3
    # the pix2pixHD-only tasks refuse an LST run at start-up
    with pytest.raises(ConfigError, match="task=predict does not run model=lst"):
        validate_config(lst_config(tmp_path / "r", "task=predict", f"task.ckpt_path={lst_ckpt}"))
