"""speed.cuda_graph: the whole training step captured once and replayed as one CUDA graph.

Small nets are launch-bound on a fast GPU: a U-Net step does ~1 ms of GPU work among ~7 ms
of kernel launches and Python (issue 8's profile), and Lightning adds ~2 ms per step. A CUDA
graph replays the recorded kernels of forward, loss mix, backward, optimizer step and EMA
update with one launch. How (torch.cuda.graphs, the "whole network capture" recipe):

- static input buffers: each batch is copied into `lr`/`hr` tensors the graph reads;
- the first `WARMUP` steps run eagerly on a side stream (the optimizer creates its state, the
  EMA its first copy, cuDNN picks its algorithms), then step WARMUP+1 is captured and every
  step from then on is `copy_ + replay`: each one a real training step, none is repeated;
- the optimizer is built with `capturable=True` (its step counter lives on the GPU) and its
  learning rate is a GPU tensor the schedule writes into (`fill_`, no sync) after each step;
  the EMA's decay of each step (its warm-up) is a GPU tensor the same way;
- logged values are read from the graph's static outputs only at the steps whose logs reach a
  logger (a clone, so a later replay does not overwrite them).

The approach then uses Lightning's manual optimization and its training step is only that:
copy, replay (inside `LightningOptimizer.step`, so Lightning counts the step), the schedule,
and, at logging steps, the log. Whatever cannot be captured runs eager with one info line
saying why: a GAN (two optimizers), the VAE and diffusion (sampling inside the step), DDP
(the gradient all-reduce runs outside the graph's stream), a batch of another shape, no CUDA.
On the CPU (`speed.cuda_graph=true` without a GPU) the same manual step runs eagerly and
equals the automatic one exactly (tests/test_cuda_graph.py), which is what keeps the path tested
without a GPU. A NaN/Inf loss cannot skip its update inside a graph: the guard reads the loss
at logging steps and stops training there.
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)
WARMUP = 3  # eager steps before the capture (PyTorch's recipe uses 3 on a side stream)


def why_eager(approach, trainer_cfg, on_gpu: bool) -> str | None:
    """Why this run cannot capture its step (None: it can)."""
    name = type(approach).__name__
    if name != "RegressionSR":
        return f"{name} is not captured (two optimizers, or sampling inside the step)"
    strategy = str(trainer_cfg.get("strategy", "auto"))
    devices, nodes = trainer_cfg.get("devices", 1), int(trainer_cfg.get("num_nodes", 1) or 1)
    if "ddp" in strategy or nodes > 1 or (isinstance(devices, int) and devices > 1) or devices == -1:
        return "under DDP the gradient all-reduce runs outside the graph"
    if str(trainer_cfg.get("precision", "")).startswith("16"):
        return "fp16's gradient scaler steps outside a graph (bf16 and fp32 capture)"
    if trainer_cfg.get("gradient_clip_val") or int(trainer_cfg.get("accumulate_grad_batches", 1) or 1) > 1:
        return "gradient clipping and accumulation are Lightning's automatic optimization"
    if not on_gpu:
        return "no CUDA device: the captured step's code runs eager"
    return None


class GraphedStep:
    """Forward, loss mix, backward, optimizer step and EMA update of a regression approach on
    static buffers: eager, or captured on CUDA and replayed."""

    def __init__(self, approach, capture: bool):
        self.approach, self.capture = approach, bool(capture)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: dict[str, torch.Tensor] = {}
        self.shape: tuple | None = None
        self.eager_steps = 0
        self.warned_shape = False

    # -- the step, eager or recorded ---------------------------------------------------------
    def _forward_backward(self) -> None:
        a, s = self.approach, self.static
        total, terms = a.loss(a.net(s["lr"]), s["hr"])
        s["total"], s["terms"] = total, terms
        total.backward()

    def _eager(self, optimizer) -> None:
        """Exactly Lightning's automatic order: forward, loss, zero_grad, backward, step."""
        a, s = self.approach, self.static
        total, terms = a.loss(a.net(s["lr"]), s["hr"])
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        s["total"], s["terms"] = total.detach(), {k: v.detach() for k, v in terms.items()}
        if a.ema is not None:
            a.ema.update(a.net)

    def _captured_body(self, optimizer) -> None:
        self._forward_backward()
        optimizer.step()
        ema = self.approach.ema
        if ema is not None:
            ema.update(self.approach.net, weight=self.static["ema_weight"])

    def _capture(self, optimizer) -> None:
        """Record the step (its kernels are not run): lr as a GPU tensor while recording."""
        groups = optimizer.param_groups
        self.static["lr_t"] = [torch.tensor(float(g["lr"]), device=self.static["lr"].device) for g in groups]
        floats = [g["lr"] for g in groups]
        for g, t in zip(groups, self.static["lr_t"]):
            g["lr"] = t
        optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        # Lightning's bf16 autocast caches casts across calls, which a graph must not (PyTorch's docs)
        autocast = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else torch.float32
        torch.clear_autocast_cache()
        with torch.cuda.graph(self.graph), torch.autocast("cuda", dtype, enabled=autocast, cache_enabled=False):
            self._captured_body(optimizer)
        for g, value in zip(groups, floats):
            g["lr"] = value

    def __call__(self, batch: dict, optimizer) -> tuple[torch.Tensor, dict]:
        """One training step on `batch`; -> (loss, terms) as static tensors."""
        lr, hr = batch["lr"], batch["hr"]
        if self.shape is None:
            self.shape = (tuple(lr.shape), tuple(hr.shape), lr.dtype)
            self.static["lr"], self.static["hr"] = torch.empty_like(lr), torch.empty_like(hr)
            if self.capture:
                self.static["ema_weight"] = torch.zeros((), device=lr.device)
        if (tuple(lr.shape), tuple(hr.shape), lr.dtype) != self.shape:
            if not self.warned_shape:
                log.info("speed.cuda_graph: a batch of shape %s differs from the captured %s: it runs eager",
                         tuple(lr.shape), self.shape[0])
                self.warned_shape = True
            self.static.update(lr=lr, hr=hr)  # eager on the batch itself; buffers untouched
            keep = self.static["lr"], self.static["hr"]
            self._eager(optimizer)
            self.static["lr"], self.static["hr"] = keep
            return self.static["total"], self.static["terms"]
        self.static["lr"].copy_(lr, non_blocking=True)
        self.static["hr"].copy_(hr, non_blocking=True)
        if not self.capture:
            self._eager(optimizer)
        elif self.graph is None and self.eager_steps < WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._eager(optimizer)
            torch.cuda.current_stream().wait_stream(side)
            self.eager_steps += 1
        else:
            if self.graph is None:
                self._capture(optimizer)
            ema = self.approach.ema
            if ema is not None:
                self.static["ema_weight"].fill_(1.0 - ema.decay_at(ema.updates))
                ema.updates += 1
            self.graph.replay()
        return self.static["total"], self.static["terms"]

    def after_schedule(self, optimizer) -> None:
        """The schedule wrote float learning rates: pass them to the graph's tensors (no sync)."""
        for g, t in zip(optimizer.param_groups, self.static.get("lr_t", [])):
            t.fill_(float(g["lr"]))
