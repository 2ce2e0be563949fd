"""Linear Style Transfer's own task=test figures (``model.test_metrics``), added to what its ``test_step`` logs.

LST is scored by its own ``test_step`` (``tasks.evaluate.test_with_module_metrics``): ``content`` / ``style`` are the
training objective's weighted terms on the unclamped decoder output (stage decoder: ``recon`` / ``psnr``). This adds
the paper's comparison (Li et al., CVPR 2019, §4.1, Table 1: the style and content losses of the stylised images, and
the speed at 256x256 and 512x512) for a stage-transform checkpoint:

* ``content_loss``: ``losses.ContentLoss`` (MSE of the loss network's relu4_1 features, the model's
  ``losses.content.layer``) between the stylised image as task=stylize writes it (``module.generate``: clamped to
  [0, 1]) and the content image; ``style_loss``: ``losses.StyleLoss`` (squared differences of channel means and
  Gram matrices summed over the model's ``losses.style.layers``, relu1_1..relu4_1) between it and the style image.
  Both on the model's own loss network (the separate ImageNet VGG-19), at ``content_weight`` / ``style_weight``
  (default 1: the raw distances; the training weights are 1 and 0.02). Means over the test images.
* ``fps_<size>``: stylised frames per second at ``size`` x ``size`` for each of ``fps_sizes`` (the paper: 256 and
  512), as task=stylize_video runs (batch 1, the style code computed once, each frame = encode + transform +
  decode), ``fps_warmup`` untimed then ``fps_frames`` timed frames on task=test's device (synchronised on CUDA).
  Random inputs: speed does not depend on the content. A number of this machine, not of the paper's Titan X.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from losses import ContentLoss, StyleLoss


def frames_per_second(stylizer: Any, size: int, frames: int, warmup: int, device: torch.device,
                      clock: Callable[[], float] = time.perf_counter) -> float:
    """Frames per second of ``stylizer.stylize_with_code`` on one ``size`` x ``size`` frame, the style code once."""
    if frames < 1:
        raise ValueError(f"model.test_metrics.fps_frames={frames} must be at least 1")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    generator = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, size, size, generator=generator).to(device)
    style = torch.rand(1, 3, size, size, generator=generator).to(device)
    with torch.no_grad():
        t_style, style_mean = stylizer.style_code(style)
        for _ in range(warmup):
            stylizer.stylize_with_code(content, t_style, style_mean)
        sync()
        start = clock()
        for _ in range(frames):
            stylizer.stylize_with_code(content, t_style, style_mean)
        sync()
        elapsed = clock() - start
    return frames / max(elapsed, 1e-12)


class LSTTestMetrics:
    """Accumulates the content and style losses over the test batches; measures the speed at ``compute``."""

    def __init__(self, cfg: Any, module: Any, content_weight: float = 1.0, style_weight: float = 1.0,
                 fps_sizes: Sequence[int] = (256, 512), fps_frames: int = 10, fps_warmup: int = 2) -> None:
        self.module = module
        self.content = ContentLoss(layer=module.content_loss.layer, weight=float(content_weight))
        self.style = StyleLoss(layers=module.style_loss.layers, weight=float(style_weight))
        self.fps_sizes = [int(s) for s in fps_sizes]
        self.fps_frames, self.fps_warmup = int(fps_frames), int(fps_warmup)
        self.sums = {"content_loss": 0.0, "style_loss": 0.0}
        self.count = 0
        self.skipped: dict[str, str] = {}
        self.weights: dict[str, str] = {}
        if module.is_decoder_stage:
            why = ("a stage decoder checkpoint has no trained transformation: test a stage transform checkpoint "
                   "(python run.py model=lst stage=transform stage.init_from=...)")
            self.skipped = {name: why for name in ("content_loss", "style_loss", *self._fps_names())}

    def _fps_names(self) -> list[str]:
        return [f"fps_{s}" for s in self.fps_sizes]

    @torch.no_grad()
    def update(self, batch: dict[str, Any], fake: torch.Tensor, real: torch.Tensor | None = None) -> None:
        """``fake``: the stylised images [B, 3, H, W] in [0, 1] of ``batch["content"]`` in ``batch["style"]``."""
        if self.module.is_decoder_stage:
            return
        net = self.module.loss_network
        out_feats = net(fake)
        n = int(fake.shape[0])
        # ContentLoss is a mean over the batch, StyleLoss a sum divided by the batch size: both per-image means
        self.sums["content_loss"] += n * float(self.content(out_feats, net(batch["content"])))
        self.sums["style_loss"] += n * float(self.style(out_feats, net(batch["style"])))
        self.count += n

    def compute(self) -> tuple[dict[str, float], dict[str, str]]:
        if self.module.is_decoder_stage:
            return {}, dict(self.skipped)
        values = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        if self.fps_sizes:
            stylizer = self.module.stylizer().eval()
            device = next(self.module.parameters()).device
            for size, name in zip(self.fps_sizes, self._fps_names(), strict=True):
                values[name] = frames_per_second(stylizer, size, self.fps_frames, self.fps_warmup, device)
        return values, dict(self.skipped)
