"""Learning-rate schedules of the papers, as factories for ``model.scheduler.factory`` (``_partial_: true``; the
module passes the optimizer)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def constant_then_linear_decay(niter: int, niter_decay: int) -> Callable[[int], float]:
    """pix2pixHD schedule (official ``update_learning_rate``): factor 1 for ``niter`` epochs, then minus
    1/niter_decay per epoch, reaching 0 after ``niter + niter_decay`` epochs."""

    def factor(epoch: int) -> float:
        if epoch < niter or niter_decay <= 0:
            return 1.0
        return max(0.0, 1.0 - (epoch - niter + 1) / niter_decay)

    return factor


def inverse_time_decay(decay: float) -> Callable[[int], float]:
    """LST schedule (official ``adjust_learning_rate``): factor ``1 / (1 + step * decay)``."""

    def factor(step: int) -> float:
        return 1.0 / (1.0 + step * decay)

    return factor


# Scheduler factories for ``model.scheduler.factory`` (``_partial_: true``; the module passes the optimizer).
def constant_then_linear(optimizer: torch.optim.Optimizer, niter: int = 100,
                         niter_decay: int = 100) -> torch.optim.lr_scheduler.LRScheduler:
    """pix2pixHD: constant lr for ``niter`` epochs, then linear decay to 0 over ``niter_decay`` (interval epoch)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, constant_then_linear_decay(int(niter), int(niter_decay)))


def inverse_time(optimizer: torch.optim.Optimizer, decay: float = 1e-5) -> torch.optim.lr_scheduler.LRScheduler:
    """LST: lr / (1 + step * decay) (interval step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, inverse_time_decay(float(decay)))
