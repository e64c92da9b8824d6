"""make bench's measurement: srlab and the hand-written loop in alternating windows, ABAB...

One ratio from one srlab window and one raw window moves with whatever the machine does
between them: GPU clocks settling, cuDNN autotuning, a neighbour on a shared CPU (issue 23
measured the raw loop at 7.73, 7.44 and 6.36 b/s on one net in one session). So each row runs
srlab's own training (`srlab-train`'s objects, one Lightning `fit`) for warm-up + `windows`
timed windows of `steps` steps, and after each srlab window the callback runs one raw window
of `steps` steps on the same net, in the same process, on the same device: A B A B ... Each
window pair gives a ratio; the row reports the median ratio and its min-max.

The raw loop does per step what srlab's config does, so the ratio is the framework's cost and
nothing else: the HR batch (uint8 when srlab ships uint8) is converted and degraded on the
device each step when srlab makes LR on the device (the same degradation object, called
directly), forward in the same precision, the loss, backward, the optimizer and LR schedule,
and the EMA update (one fused lerp over the weights, as a careful hand-written loop keeps it)
when the row has EMA. A diffusion net's step is ResShift's (a random t, x_t, predict x0).
"""
from __future__ import annotations

import time

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from srlab.ops.imresize import imresize


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def window_rate(stamps: list[float], device: torch.device) -> float:
    """Steps/s of one window. GPU: over the whole window (only synced ends mean anything).
    CPU: from the median step, which a busy neighbour cannot move the way it moves a total."""
    if device.type == "cuda":
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return 1.0 / float(np.median(np.diff(stamps)))


class RawLoop:
    """The hand-written training step on `model.net`, with its own optimizer and schedule."""

    def __init__(self, model, datamodule, raw_batch: dict, cfg, device: torch.device):
        self.net, self.device, self.scale = model.net, device, int(cfg.scale)
        self.opt = instantiate(cfg.approach.optimizer)(params=[p for p in self.net.parameters() if p.requires_grad])
        sched_cfg = cfg.approach.get("scheduler")
        self.sched = instantiate(sched_cfg)(optimizer=self.opt) if sched_cfg else None
        names = list(cfg.loss.terms)
        fn = {"mse": F.mse_loss, "l1": F.l1_loss}.get(names[0]) if len(names) == 1 else None
        self.loss_fn = fn or (lambda sr, hr: model.loss(sr, hr)[0])
        self.bf16 = "bf16" in str(cfg.trainer.precision)
        self.ema_decay = float((cfg.approach.get("ema") or {}).get("decay", 0.0) or 0.0)
        self.ema = [p.detach().clone() for p in self.net.parameters()] if self.ema_decay > 0 else None
        self.degradation = datamodule.degradation
        moved = datamodule.transfer_batch_to_device(dict(raw_batch), device, 0)
        self.hr, self.lr = moved["hr"], moved.get("lr")  # lr given: the loader made it (degrade_on=loader)
        self.gray = moved.get("gray_cpu")
        self.on_device = self.lr is None
        if self.on_device and hasattr(self.degradation, "train_batch"):  # realesrgan: its whole batch path
            self.degrade = lambda hr: datamodule.on_after_batch_transfer(
                {**moved, "hr": hr, "gray_cpu": self.gray, "id": raw_batch.get("id")}, 0)["lr"]
        else:
            self.degrade = lambda hr: self.degradation.batch(hr, gray=self.gray)

    def predict(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        net = self.net
        if not hasattr(net, "q_sample"):
            return net(lr)
        x0, y0 = hr * 2 - 1, imresize(lr, scale=net.scale) * 2 - 1  # ResShift's step
        t = torch.randint(net.steps, (hr.shape[0],), device=hr.device)
        return (net.predict_x0(net.q_sample(x0, y0, t, torch.randn_like(x0)), y0, t) + 1) / 2

    def step(self, zero_grad: bool = True) -> None:
        hr = self.hr.float().div_(255) if self.hr.dtype == torch.uint8 else self.hr
        lr = self.degrade(hr) if self.on_device else self.lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss_fn(self.predict(lr, hr), hr)
        if zero_grad:  # a captured step's grads are written, not accumulated
            self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        if self.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema, [p.detach() for p in self.net.parameters()], 1.0 - self.ema_decay)

    def captured(self):
        """The same step captured once as a CUDA graph (PyTorch's whole-network recipe: 3 eager
        steps on a side stream, then the capture); -> a function that replays it. Needs a
        capturable optimizer and a step without host-side draws (bicubic, not crapify)."""
        if getattr(self, "graph", None) is None:
            for group in self.opt.param_groups:
                group["capturable"] = True
                group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
            self.sched = None  # a constant lr inside the graph: the timing is the same
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.step()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            self.opt.zero_grad(set_to_none=True)
            # thread_local: srlab's loader threads (pin memory) run beside the capture
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.step(zero_grad=False)
        return self.graph.replay

    def run(self, steps: int, graph: bool = False) -> float:
        """One timed window of `steps` steps -> batches/s (`graph`: replays of the captured step)."""
        self.net.train()
        step = self.captured() if graph else self.step
        sync(self.device)
        stamps = [time.perf_counter()]
        for _ in range(steps):
            step()
            stamps.append(time.perf_counter())
        sync(self.device)
        stamps[-1] = time.perf_counter()
        return window_rate(stamps, self.device)


class Alternate(pl.Callback):
    """Inside srlab's fit: after `warmup` steps, time `windows` srlab windows of `steps` steps,
    each followed by one raw window (`raw.run`) while Lightning waits between two steps."""

    def __init__(self, raw: RawLoop, warmup: int, steps: int, windows: int, graph_raw: RawLoop | None = None):
        self.raw, self.warmup, self.steps, self.windows = raw, warmup, steps, windows
        self.graph_raw = graph_raw  # its own optimizer, its step captured as a CUDA graph: A B C A B C
        self.srlab: list[float] = []
        self.raw_rates: list[float] = []
        self.graph_rates: list[float] = []
        self.stamps: list[float] = []

    @property
    def total_steps(self) -> int:
        return self.warmup + self.windows * self.steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step < self.warmup or len(self.srlab) == self.windows:
            return
        if not self.stamps:
            sync(pl_module.device)
        self.stamps.append(time.perf_counter())
        if len(self.stamps) == self.steps + 1:  # an srlab window is complete: one raw window now
            sync(pl_module.device)
            self.stamps[-1] = time.perf_counter()
            self.srlab.append(window_rate(self.stamps, pl_module.device))
            self.raw_rates.append(self.raw.run(self.steps))
            if self.graph_raw is not None:
                self.graph_rates.append(self.graph_raw.run(self.steps, graph=True))
            sync(pl_module.device)
            self.stamps = [time.perf_counter()]  # the next srlab window starts after the raw one

    def summary(self) -> dict:
        ratios = [s / r for s, r in zip(self.srlab, self.raw_rates)]
        return {"srlab_batches_per_s": round(float(np.median(self.srlab)), 3),
                "raw_batches_per_s": round(float(np.median(self.raw_rates)), 3),
                "ratio": round(float(np.median(ratios)), 3),
                "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3), "windows": len(ratios),
                **({"raw_graph_batches_per_s": round(float(np.median(self.graph_rates)), 3),
                    "ratio_to_raw_graph": round(float(np.median([s / g for s, g in zip(self.srlab, self.graph_rates)])), 3)}
                   if self.graph_rates else {})}
