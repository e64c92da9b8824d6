"""Non-finite losses: name the term and the step, skip the update, stop before it spreads.

One NaN reaching Adam poisons its moments and every weight after it; a GAN that diverges
would otherwise train on NaNs to the end and save them as best.ckpt. The approaches ask
`NonFiniteGuard.ok` before each optimizer step: a finite loss passes; a non-finite one
logs one warning naming the bad term(s) and the step, and the update is skipped (weights,
optimizer moments and EMA stay as they were). After `max_skips` skipped steps in a row
training stops with one line, and the last checkpoint (CheckpointOnException writes
last.ckpt) holds the last good weights.

The check reads one scalar back from the device per optimizer step: free on a CPU; on a GPU
it waits for the forward pass before backward kernels are queued, which is why it can be
turned off (`approach.max_nonfinite_skips=null`).

Under speed.cuda_graph a replayed step cannot skip its update (srlab/training/cuda_graph.py):
the graph only raises a device flag, read once per logging interval and before every
checkpoint save. A set flag stops training with `NonFiniteState`, which saves nothing on the
way out (the weights are NaN by then) and names the last checkpoint written while they were
finite: a NaN there costs at most the steps of one logging interval, and never `last.ckpt`.
"""
import logging

import torch

from srlab.errors import SrlabError

log = logging.getLogger(__name__)


class NonFiniteLoss(SrlabError):
    """Training stopped: the loss was non-finite for too many steps in a row."""


class NonFiniteState(NonFiniteLoss):
    """Training stopped: a captured step applied a non-finite loss, so the weights, optimizer
    moments and EMA are no longer finite. `CheckpointOnException` must not save them over the
    last good checkpoint (`save_on_exit`)."""

    save_on_exit = False


def last_good_checkpoint(trainer) -> str | None:
    """The checkpoint this process last wrote (`AtomicCheckpointIO.last_saved`, every save of
    a captured run is checked finite first), else the one the run resumed from; None if none."""
    saved = getattr(getattr(trainer.strategy, "checkpoint_io", None), "last_saved", None)
    if saved:
        return f"{saved[0]} (step {saved[1]})"
    if trainer.ckpt_path:
        return f"{trainer.ckpt_path} (the checkpoint this run resumed from)"
    return None


def graph_nonfinite(since: int, step: int, trainer) -> NonFiniteState:
    """The one-line error of a NaN/Inf loss found under speed.cuda_graph."""
    good = last_good_checkpoint(trainer)
    where = f"resume from {good}" if good else "no checkpoint was saved before it: start again"
    return NonFiniteState(
        f"non-finite loss under speed.cuda_graph between steps {since + 1} and {step}: a captured step cannot "
        "skip its update, so the weights are no longer finite and nothing was saved; "
        f"{where} with a lower learning rate, or with speed.cuda_graph=false (whose steps skip such updates)")


class NonFiniteGuard:
    def __init__(self, max_skips: int | None = 5):
        if max_skips is not None and (not isinstance(max_skips, int) or max_skips < 0):
            raise SrlabError(f"approach.max_nonfinite_skips={max_skips}: use null (no check), 0 (stop at the "
                             "first non-finite loss) or the number of updates to skip in a row, e.g. 5")
        self.max_skips = max_skips
        self.in_a_row = 0
        self.skipped = 0

    def ok(self, total: torch.Tensor, terms: dict, step: int, what: str = "loss") -> bool:
        """Is this update safe to apply? (False: skip it; raises after too many in a row.)"""
        if self.max_skips is None or bool(torch.isfinite(total.detach()).all()):
            self.in_a_row = 0
            return True
        bad = {n: float(v.detach().float().mean()) for n, v in terms.items() if not torch.isfinite(v.detach()).all()}
        named = ", ".join(f"{n}={v}" for n, v in bad.items()) or f"total={float(total.detach().float().mean())}"
        self.in_a_row += 1
        self.skipped += 1
        if self.in_a_row > self.max_skips:
            raise NonFiniteLoss(f"non-finite {what} at step {step} ({named}) for {self.in_a_row} steps in a row: "
                                "training stopped, the weights are those of the last good step (last.ckpt); "
                                "lower the learning rate or check the data")
        log.warning("non-finite %s at step %d (%s): update skipped (%d in a row, stops after %d)",
                    what, step, named, self.in_a_row, self.max_skips)
        return False
