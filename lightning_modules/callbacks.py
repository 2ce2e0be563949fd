"""Callbacks shared by all papers: periodic sample grids (rank 0 only), atomic checkpoint writes, and
checkpoint-then-requeue on SLURM's preemption / time-limit signal."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from datamodules.atomic_writes import atomic_torch_save
from datamodules.image_grids import image_grid, save_grid

log = logging.getLogger(__name__)


def training_steps(trainer: pl.Trainer) -> int:
    """The project's "step": training batches done (one iteration of the paper's loop), the count the loggers'
    ``step`` axis, sample grid and checkpoint names, the start/finish lines and ``trainer.max_steps`` use.

    Lightning's ``global_step`` counts optimizer steps instead: a GAN takes two per batch (G and D), so it reads
    twice as much. The count lives in the fit loop (and in every checkpoint, so a resumed run continues it). Inside
    ``on_train_batch_end`` it is still the index of the current batch (the step its logged row carries): the
    batches done are one more."""
    return int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))


def checkpoint_training_steps(checkpoint: dict[str, Any]) -> int:
    """:func:`training_steps` of a saved checkpoint (Lightning stores it with the fit loop's state)."""
    loop = ((checkpoint.get("loops") or {}).get("fit_loop") or {}).get("epoch_loop.state_dict") or {}
    return int(loop.get("_batches_that_stepped", checkpoint.get("global_step", 0)))


class StepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ``{step}`` in file names is the project's step (batches, :func:`training_steps`),
    not Lightning's optimizer-step count, so ``epoch0010-step0000640.ckpt`` agrees with the CSV and the logs."""

    def _monitor_candidates(self, trainer: pl.Trainer) -> dict[str, torch.Tensor]:
        candidates = super()._monitor_candidates(trainer)
        candidates["step"] = torch.tensor(training_steps(trainer))
        return candidates


class SampleGridCallback(pl.Callback):
    """Every ``every_n_steps`` training batches, write ``samples/step_XXXXXX.png`` (label | generated | real)
    from a fixed batch, and send it to the loggers that take images (W&B, TensorBoard)."""

    def __init__(self, dirpath: str, every_n_steps: int = 100, max_images: int = 4, on_train_end: bool = True):
        self.dirpath = dirpath
        self.every_n_steps = int(every_n_steps)
        self.max_images = int(max_images)
        self.write_on_train_end = on_train_end
        self._batch: dict[str, Any] | None = None
        self.written: list[str] = []
        self._batches = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._collect(batch)
        self._batches += 1
        if self.every_n_steps > 0 and (self._batches - 1) % self.every_n_steps == 0:
            self.write(trainer, pl_module, training_steps(trainer))

    def _collect(self, batch: dict[str, Any]) -> None:
        """Keep the first ``max_images`` training samples (over several batches when batches are small)."""
        have = 0 if self._batch is None else next(
            v.shape[0] for v in self._batch.values() if isinstance(v, torch.Tensor))
        if have >= self.max_images:
            return
        take = {k: (v[: self.max_images - have].detach().cpu().clone() if isinstance(v, torch.Tensor)
                    else list(v)[: self.max_images - have]) for k, v in batch.items()}
        if self._batch is None:
            self._batch = take
        else:
            self._batch = {k: (torch.cat([self._batch[k], v]) if isinstance(v, torch.Tensor) else self._batch[k] + v)
                           for k, v in take.items()}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.write_on_train_end and self._batch is not None:
            self.write(trainer, pl_module, training_steps(trainer), name="final")

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int, name: str | None = None) -> None:
        if not trainer.is_global_zero or self._batch is None:
            return
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            batch = {k: (v.to(pl_module.device) if isinstance(v, torch.Tensor) else v)
                     for k, v in self._batch.items()}
            rows = pl_module.sample_images(batch)
        pl_module.train(was_training)
        grid = image_grid(rows, self.max_images)
        path = save_grid(grid, os.path.join(self.dirpath, f"{name or f'step_{step:06d}'}.png"))
        self.written.append(path)
        caption = " | ".join(rows)
        self.caption = caption  # what each grid's rows show, for the end-of-run summary
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[grid], step=step, caption=[caption])
            elif hasattr(logger, "experiment") and hasattr(logger.experiment, "add_image"):
                logger.experiment.add_image("samples", grid, global_step=step)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file unique to this writer (``<path>.<pid>.<random>.tmp``), fsync, then
    rename: a kill mid-write never leaves a truncated .ckpt, and two runs saving one path never share a temporary."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, str(path))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Lightning's reads (resume, ddp_spawn's hand-back of the weights) go through the one safe read
        (``weights_only=True`` whatever the caller asks), uncached: the optimizers update what they get in place."""
        from lightning_modules.checkpoints import safe_torch_load

        return safe_torch_load(str(path))


class ResumeState(pl.Callback):
    """What a resume needs beyond Lightning's own checkpoint, so that it continues exactly where the run stopped.

    * **Epoch-end counters**: ``last.ckpt`` is written in ``on_train_epoch_end``, before Lightning counts the epoch
      as completed. For epoch-based runs Lightning fixes that up on restore, but not with ``trainer.max_steps`` set
      (iteration-based training): the resume trained one more batch of the old epoch and ended an epoch early (26
      steps instead of 30). A checkpoint written at the end of an epoch records the epoch as completed.
    * **Random state** (single process): torch, NumPy and Python's generators, so the next epoch's shuffle and
      augmentations are those of an uninterrupted run (the same metrics rows, value for value).
    """

    @property
    def state_key(self) -> str:
        return "condsynth.ResumeState"

    def state_dict(self) -> dict[str, Any]:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
                "python": random.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = state

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state, self._rng = getattr(self, "_rng", None), None
        if not state or trainer.world_size != 1:  # ranks have their own generators; rank 0's would be copied to all
            return
        import random

        import numpy as np

        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        progress = trainer.fit_loop.epoch_progress
        at_epoch_end = (progress.current.processed == progress.current.ready
                        and progress.current.completed == progress.current.processed - 1)
        loops = (checkpoint.get("loops") or {}).get("fit_loop") or {}
        epochs, batches = loops.get("epoch_progress"), loops.get("epoch_loop.batch_progress")
        if not (at_epoch_end and epochs and batches):
            return
        for counter in ("total", "current"):  # the epoch is done: what Lightning records after this hook
            epochs[counter]["completed"] = epochs[counter]["processed"]
        # and the next epoch has not started: its batch counters at zero, as Lightning resets them at its start
        batches["current"] = {key: 0 for key in batches["current"]}
        batches["is_last_batch"] = False


def requeue_signal() -> signal.Signals:
    """The signal submitit asks SLURM to send before the time limit (``--signal=USR2@signal_delay_s``), and the one
    ``scancel --signal=USR2 <job>`` sends to preempt. ``SUBMITIT_PREEMPT_SIGNAL`` changes it, as it does submitit's."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


def slurm_restart_count() -> int:
    """How many times SLURM has requeued this job (0 on the first run, and outside SLURM)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        return 0


def optimizer_steps(trainer: pl.Trainer) -> list[int]:
    """Adam's (or any stateful optimizer's) per-parameter ``step`` counter of each optimizer; -1 when empty."""
    steps = []
    for opt in trainer.optimizers:
        counts = [int(s["step"]) for s in opt.state.values() if isinstance(s, dict) and "step" in s]
        steps.append(max(counts) if counts else -1)
    return steps


class PreemptionCheckpoint(pl.Callback):
    """Save the exact training state when SLURM is about to stop the job, then let submitit requeue it.

    One mechanism, submitit's: hydra-submitit-launcher submits jobs with ``--signal=USR2@<signal_delay_s>`` and
    installs submitit's handler, which re-pickles the job and runs ``scontrol requeue``; Lightning's own SLURM
    auto-requeue is switched off (``build_trainer``) so the two never both act. This callback sits in front of
    submitit's handler: saving inside a signal handler is unsafe under DDP (each rank is somewhere else, and saving
    synchronises ranks), so the handler only records the signal. At the next batch boundary the ranks agree (any
    rank that got it counts), the state is written atomically to ``<dirpath>/last.ckpt``, the loggers are flushed,
    and rank 0 hands over to the handler that was there before (submitit's requeue). The requeued job runs the same
    Hydra job in the same run dir, sees ``SLURM_RESTART_COUNT > 0`` and resumes from that ``last.ckpt``
    (``resolve_resume_path``): same global step, same optimizer state, same loop position.

    Without submitit (your own sbatch script) rank 0 runs ``scontrol requeue $SLURM_JOB_ID`` itself; outside SLURM
    the run stops after saving (``kill -USR2 <pid>``; rerun with ``ckpt_path=last``).
    """

    EXIT_CODE = 3  # what a process stopped by the signal exits with when nothing else decides

    def __init__(self, dirpath: str, filename: str = "last.ckpt", signum: int | None = None):
        self.dirpath = dirpath
        self.filename = filename
        self.signum = signal.Signals(signum) if signum is not None else requeue_signal()
        self._received: int | None = None
        self._previous: Any = None
        self._previous_stop: dict[int, Any] = {}
        self._installed = False

    # --- signal plumbing ----------------------------------------------------------------------------
    #: Ctrl-C and ``kill``: save at the batch boundary, then exit 128 + the signal (130 / 143)
    STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._received == signal.SIGINT:  # a second Ctrl-C: stop now
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            raise SystemExit(128 + signal.SIGINT)
        self._received = signum  # only this: the work happens at the next batch boundary
        if signum == signal.SIGINT:
            print("\ncondsynth: Ctrl-C: saving a checkpoint at the end of this batch (Ctrl-C again: stop now)",
                  flush=True)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._previous_stop = {s: signal.getsignal(s) for s in self.STOP_SIGNALS if s != self.signum}
        for s in self._previous_stop:
            signal.signal(s, self._handler)
        self._previous = signal.getsignal(self.signum)
        signal.signal(self.signum, self._handler)
        self._installed = True

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(self.signum, self._previous if self._previous is not None else signal.SIG_DFL)
            for s, previous in self._previous_stop.items():
                signal.signal(s, previous if previous is not None else signal.SIG_DFL)
            self._installed = False

    # --- what a run logs when it starts: the step it starts from, and the optimizer state it restored --------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            restarts = slurm_restart_count()
            steps = optimizer_steps(trainer)
            restored = f"; restored optimizer steps {steps}" if any(step >= 0 for step in steps) else ""
            log.info("condsynth: training starts at step %d (epoch %d; Lightning global step %d)%s%s",
                     training_steps(trainer), trainer.current_epoch, trainer.global_step, restored,
                     f"; SLURM restart {restarts}" if restarts else "")

    # --- the batch boundary where all ranks agree -------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        stop = trainer.strategy.reduce_boolean_decision(self._received is not None, all=False)
        if not stop:
            return
        signum = self._received if self._received is not None else int(self.signum)
        path = os.path.join(self.dirpath, self.filename)
        try:  # this batch's metrics: Lightning logs them after this hook, which the run never reaches
            trainer._logger_connector.update_train_step_metrics()
        except Exception as err:  # private API: losing one row of metrics must not stop the checkpoint
            log.debug("could not log the last batch's metrics: %s", err)
        trainer.save_checkpoint(path)
        trainer.strategy.barrier("condsynth.preemption.saved")
        for lg in trainer.loggers:
            lg.save()
        if trainer.is_global_zero:
            what = "preempted" if signum == self.signum else "interrupted"
            log.warning("condsynth: %s (%s) at step %d (epoch %d; Lightning global step %d; optimizer steps "
                        "%s); saved %s", what, signal.Signals(signum).name, training_steps(trainer) + 1,
                        trainer.current_epoch, trainer.global_step, optimizer_steps(trainer), path)
        # we exit right after; SLURM's SIGTERM after the requeue must not start Lightning's SIGTERM handler
        # (it broadcasts between ranks from inside a signal handler)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        exit_exc: BaseException = SystemExit(self.EXIT_CODE)
        if signum in self.STOP_SIGNALS and signum != self.signum:  # stopped by the user: no requeue
            exit_exc = SystemExit(128 + signum)
            if trainer.is_global_zero:
                log.warning("condsynth: stopped by %s; rerun with ckpt_path=last to continue",
                            signal.Signals(signum).name)
        elif trainer.is_global_zero:
            exit_exc = self._hand_over(signum)
        trainer.strategy.barrier("condsynth.preemption.requeued")  # no rank leaves before rank 0 has requeued
        raise exit_exc

    def _hand_over(self, signum: int) -> BaseException:
        """Run the handler that was installed before ours (submitit: dump the job, ``scontrol requeue``, exit);
        returns the exception to leave with."""
        previous = self._previous
        try:
            if callable(previous):
                previous(signum, None)
            elif os.environ.get("SLURM_JOB_ID"):
                job = os.environ["SLURM_JOB_ID"]
                if os.environ.get("SLURM_ARRAY_JOB_ID"):
                    job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
                subprocess.run(["scontrol", "requeue", job], check=True, timeout=60)
                log.warning("condsynth: requeued SLURM job %s", job)
            else:
                log.warning("condsynth: stopped by %s; rerun with ckpt_path=last to continue",
                            signal.Signals(signum).name)
        except BaseException as exc:  # submitit exits with SystemExit(-1) after requeueing
            return exc
        return SystemExit(self.EXIT_CODE)
