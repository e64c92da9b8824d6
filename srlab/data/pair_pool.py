"""Real-ESRGAN's training-pair pool: mixes degradations across batches.

Real-ESRGAN draws the resize factor, the resize mode, the noise type and the order of the
last steps once per *batch* (so a batch stays one tensor on the GPU); every image of a batch
then shares them. The pool decorrelates that again (Wang et al. 2021, Sec. 4.1): it holds the
last `size` (LR, HR) pairs; once full, each new batch goes into the pool after a random
shuffle and the batch trained on is `batch_size` pairs drawn from it. Until it is full, batches
pass through unchanged. The capacity is `size` rounded down to a multiple of the batch size
(Real-ESRGAN requires it to divide; 180 with its batch 12). The shuffle comes from a CPU
generator and the pool stays on the device: no read-back, deterministic given the seed. The
pool is not checkpointed: a resumed run refills it.
"""
from __future__ import annotations

import torch


class PairPool:
    def __init__(self, size: int):
        self.size = int(size)
        self.store: dict[str, torch.Tensor] | None = None
        self.names: list | None = None
        self.filled = 0

    def __call__(self, batch: dict, keys: tuple[str, ...], generator: torch.Generator | None) -> dict:
        """The batch to train on: `batch` itself while filling, else pairs from the pool.
        `keys` name the tensors that travel together (their first dimension is the batch);
        a list under "name" travels too."""
        b = batch[keys[0]].shape[0]
        capacity = self.size // b * b
        if capacity <= b:  # a pool no larger than a batch cannot mix anything
            return batch
        if self.store is None or next(iter(self.store.values())).shape[0] != capacity:
            self.store = {k: batch[k].new_empty((capacity, *batch[k].shape[1:])) for k in keys}
            self.names, self.filled = [None] * capacity, 0
        names = list(batch.get("name", [None] * b))
        if self.filled < capacity:
            for k in keys:
                self.store[k][self.filled:self.filled + b] = batch[k]
            self.names[self.filled:self.filled + b] = names
            self.filled += b
            return batch
        order = torch.randperm(capacity, generator=generator)
        index = order.to(batch[keys[0]].device, non_blocking=True)
        out = dict(batch)
        for k in keys:
            shuffled = self.store[k][index]
            out[k] = shuffled[:b].clone()
            shuffled[:b] = batch[k]
            self.store[k] = shuffled
        shuffled_names = [self.names[i] for i in order.tolist()]
        out["name"] = shuffled_names[:b]
        self.names = names + shuffled_names[b:]
        return out
