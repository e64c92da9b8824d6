"""Where an upscale's time goes: read, net, blend, write, summed per stage.

`srlab-upscale ... profile=true` prints one line per image and a total. On a GPU the work is
asynchronous, so a stage's wall time says nothing unless the GPU is waited for at its edges:
with profiling on, the timer synchronises the device around each stage (which removes the
overlap of CPU and GPU work, so the profiled total is an upper bound of the real one). The
writer runs in its own thread, overlapping the net; its busy time is reported as `write`,
and `wall` is the elapsed time, less than the sum when stages overlap.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict

import torch

STAGES = ("read", "net", "blend", "write")


class StageTimer:
    def __init__(self, device: torch.device | None = None):
        self.seconds: dict[str, float] = defaultdict(float)
        self.sync = device is not None and torch.device(device).type == "cuda"
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, stage: str):
        if self.sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                torch.cuda.synchronize()
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:  # the writer thread adds too
            self.seconds[stage] += seconds

    def merge(self, other: StageTimer) -> None:
        for stage, seconds in other.seconds.items():
            self.add(stage, seconds)

    def line(self, what: str, wall: float) -> str:
        parts = " ".join(f"{stage} {self.seconds.get(stage, 0.0):.2f}s" for stage in STAGES)
        return f"profile {what}: {parts} | wall {wall:.2f}s"
