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
"""
import logging

import torch

from srlab.errors import SrlabError

log = logging.getLogger(__name__)


class NonFiniteLoss(SrlabError):
    """Training stopped: the loss was non-finite for too many steps in a row."""


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
