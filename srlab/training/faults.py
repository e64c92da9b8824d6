"""What a fault can cost a run: checkpoints that are whole, and signals that save first.

srlab's promise (docs/faults.md): a run loses at most the steps since its last save, and a
save is never half a file.
- `last.ckpt` is written at every validation (`callbacks.last_checkpoint`), every
  `callbacks.timed_checkpoint.train_time_interval` of training (bounds what a kill -9 or a
  power cut loses), and when training stops on an exception (`CheckpointOnException`).
- SIGTERM (Lightning's handler) and SIGUSR1 (`PreemptionSignals`, outside SLURM) finish the
  current step, save `last.ckpt` at that step and exit with status 0. Under SLURM with
  `#SBATCH --signal=SIGUSR1@90`, Lightning's own handler saves `hpc_ckpt_<n>.ckpt` in the run
  directory and requeues the job (`scontrol requeue`); the requeued job, run in the same
  directory, resumes from it by itself.
- `AtomicCheckpointIO` writes each checkpoint to a temporary file in the same folder, syncs
  it to disk and renames it over the old one: a kill during a save leaves the previous
  checkpoint, never a truncated one (a rename within a folder is atomic on POSIX). It also
  remembers the last file it wrote (`last_saved`): under speed.cuda_graph every save is
  checked finite first, so that is the checkpoint a NaN's error tells the user to resume from
  (srlab/training/nonfinite.py).
"""
from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: temp file + fsync + rename."""

    last_saved: tuple[str, int] | None = None  # (path, global step) of the last completed write

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():  # the save itself failed: leave the old checkpoint as it was
                tmp.unlink()
        _fsync_dir(path.parent)
        self.last_saved = (str(path), int(checkpoint.get("global_step", 0)))

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a crash right after it must not undo it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class PreemptionSignals(pl.Callback):
    """SIGUSR1 (the usual "you are about to be pre-empted" signal) stops training like
    SIGTERM: after the current step, with `last.ckpt` saved by `CheckpointOnException`.

    Under SLURM with auto-requeue, Lightning handles SIGUSR1 itself (save + requeue), and
    this callback stays out of its way. Without a handler a SIGUSR1 would kill the process
    on the spot, losing everything since the last save.
    """

    def __init__(self, signals: tuple[str, ...] = ("SIGUSR1",)):
        self.signals = [getattr(signal, name) for name in signals]
        self._previous: dict = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        env = trainer._accelerator_connector.cluster_environment
        if isinstance(env, SLURMEnvironment) and env.auto_requeue:
            return
        for sig in self.signals:
            try:
                self._previous[sig] = signal.signal(sig, self._make_handler(trainer))
            except ValueError:  # not the main thread: signals cannot be handled here
                return

    def _make_handler(self, trainer):
        def stop(signum, frame):
            log.info("received %s: stopping after this step, saving last.ckpt", signal.Signals(signum).name)
            # the flag Lightning's own SIGTERM handler sets: the loop raises SIGTERMException
            # after the current batch, CheckpointOnException saves, the process exits with 0
            trainer._signal_connector.received_sigterm = True

        return stop

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
