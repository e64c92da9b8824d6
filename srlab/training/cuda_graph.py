"""speed.cuda_graph: the whole training step captured once and replayed as one CUDA graph.

Small nets are launch-bound on a fast GPU: a U-Net step does ~1 ms of GPU work among ~7 ms
of kernel launches and Python (issue 8's profile), and Lightning adds ~2 ms per step. A CUDA
graph replays the recorded kernels of forward, loss mix, backward, optimizer step and EMA
update with one launch. How (torch.cuda.graphs, the "whole network capture" recipe):

- static input buffers: each batch is copied into `lr`/`hr` tensors the graph reads; a batch of
  another shape runs eager on itself, leaving the buffers and the graph's outputs alone;
- the first `WARMUP` steps run eagerly on a side stream (the optimizer creates its state, the
  EMA its first copy, cuDNN picks its algorithms), then step WARMUP+1 is captured and every
  step from then on is `copy_ + replay`: each one a real training step, none is repeated;
- the capture uses `capture_error_mode="thread_local"`: the loader's pin-memory thread may call
  cudaHostAlloc meanwhile, which the default "global" mode turns into a failed capture;
- the optimizer is built with `capturable=True` (its step counter lives on the GPU) and its
  learning rate is a GPU tensor the schedule writes into (`fill_`, no sync) after each step;
  the EMA's decay of each step (its warm-up) is a GPU tensor the same way. Param groups hold
  float learning rates outside the capture (checkpoints, the LR monitor);
- a NaN/Inf loss cannot skip its update inside a graph: the graph raises a device flag that the
  approach reads once per logging interval and before every save (srlab/training/nonfinite.py);
- imresize's weight blocks the graph reads are held as long as the graph (its lru_cache could
  free them under it).

The approach then uses Lightning's manual optimization; its training step is the copy, the
replay (outside `LightningOptimizer.step`: the approach counts the optimizer step in Lightning's
progress itself), the schedule and, at logging steps, the log. Whatever cannot be captured runs
eager with one line saying why: a GAN (two optimizers), the VAE and diffusion (sampling inside
the step), DDP/FSDP/DeepSpeed (read from the built trainer), fp16's scaler, nets that copy from
the host inside `forward`, an optimizer without `capturable`, no CUDA, and a capture that fails
for any other reason (then nothing is left behind that an eager run would not have). On the CPU
the same manual step runs eagerly and equals the automatic one exactly (tests/test_cuda_graph.py).
"""
from __future__ import annotations

import contextlib
import inspect
import logging
from functools import partial

import torch

from srlab.ops.imresize import holding_blocks

log = logging.getLogger(__name__)
WARMUP = 3  # eager steps before the capture (PyTorch's recipe uses 3 on a side stream)

# spandrel nets whose forward copies a host tensor to the GPU (`calculate_mask(...).to(x.device)`
# and the like), which a capture cannot record: always, or when the LR input is not `img_size`.
HOST_COPY_ALWAYS = {"HAT", "ATD", "Swin2SR"}
HOST_COPY_OFF_SIZE = {"DAT", "RGT", "DRCT", "GRL"}


def why_eager(approach, trainer_cfg, on_gpu: bool) -> str | None:
    """Why this run cannot capture its step, from the config (None: it can). DDP and the other
    distributed strategies are decided once the trainer exists (`distributed_reason`)."""
    name = type(approach).__name__
    if name != "RegressionSR":
        return f"{name} is not captured (two optimizers, or sampling inside the step)"
    if str(trainer_cfg.get("precision", "")).startswith("16"):
        return "fp16's gradient scaler steps outside a graph (bf16 and fp32 capture)"
    if trainer_cfg.get("gradient_clip_val") or int(trainer_cfg.get("accumulate_grad_batches", 1) or 1) > 1:
        return "gradient clipping and accumulation are Lightning's automatic optimization"
    if not on_gpu:
        return "no CUDA device: the captured step's code runs eager"
    return None


def distributed_reason(trainer) -> str | None:
    """Why the built trainer's strategy cannot run a captured step (None: one process, one device).
    `devices=[0,1]`, `devices="2"`, `"auto"` on several GPUs, fsdp and deepspeed all land here."""
    from pytorch_lightning.strategies import SingleDeviceStrategy

    strategy = type(trainer.strategy).__name__
    if trainer.world_size > 1:
        return f"{strategy} over {trainer.world_size} processes: the gradient all-reduce runs outside the graph"
    if not isinstance(trainer.strategy, SingleDeviceStrategy):
        return f"{strategy} wraps the step (sharding, all-reduce) outside the graph"
    return None


def net_reason(net, lr_hw) -> str | None:
    """Why `net` cannot be captured on LR inputs of size `lr_hw` (None: it may be)."""
    arch = getattr(net, "arch_id", None)
    if arch in HOST_COPY_ALWAYS:
        return f"net {arch} copies a mask from the host in every forward"
    if arch in HOST_COPY_OFF_SIZE:
        size = (getattr(net, "hyperparameters", None) or {}).get("img_size")
        multiple, minimum = getattr(net, "multiple", 1), getattr(net, "minimum", 1)
        padded = [max(minimum, -(-int(n) // multiple) * multiple) for n in lr_hw]  # SpandrelNet.forward's padding
        if size is None or any(n != int(size) for n in padded):
            return (f"net {arch} copies a mask from the host when its input ({padded[0]}x{padded[1]}) is not its "
                    f"img_size ({size}): set net.img_size to the LR patch to capture it")
    return None


def capturable_optimizer(build, factory) -> tuple[dict, str | None]:
    """`build(factory)` with `capturable=True`; -> (optimizer config, why not capturable or None).

    SGD and many third-party optimizers take no `capturable` (a TypeError) or ignore it: those
    are built as asked and the step runs eager."""
    try:
        config = build(partial(factory, capturable=True))
    except TypeError as e:
        if "capturable" not in str(e):
            raise
        config = None
    if config is None or not config["optimizer"].defaults.get("capturable"):
        config = build(factory)
        name = type(config["optimizer"]).__name__
        return config, f"optimizer {name} has no capturable option (its step counter would be read on the host)"
    return config, None


def set_capturable(optimizer, capturable: bool) -> None:
    """Make a restored optimizer step the way this run steps.

    `Optimizer.load_state_dict` restores `capturable` from the checkpoint: an eager checkpoint
    resumed captured cannot be captured, a captured one resumed on the CPU fails its first step,
    and on a GPU steps slowly. Also moves the step counters where a fresh optimizer keeps them
    (the parameter's device when capturable or fused, else the CPU), and turns tensor learning
    rates back into floats."""
    if "capturable" not in optimizer.defaults:
        return
    for group in optimizer.param_groups:
        if torch.is_tensor(group.get("lr")):
            group["lr"] = float(group["lr"])
        group["capturable"] = capturable
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(p.device if capturable or group.get("fused") else "cpu")


class GraphedStep:
    """Forward, loss mix, backward, optimizer step and EMA update of a regression approach on
    static buffers: eager, or captured on CUDA and replayed."""

    check_liveness = False  # torch.cuda.graph(check_input_liveness=True) where torch has it (tests)

    def __init__(self, approach, capture: bool):
        self.approach, self.capture = approach, bool(capture)
        self.graph = None
        self.static: dict = {}
        self.shape: tuple | None = None
        self.eager_steps = 0
        self.warned_shape = False
        self.held: list = []  # imresize weight blocks the graph reads: alive as long as it
        self.replays = 0  # since the last finite check
        self.checked_step = 0  # global step of the last check that found the weights finite

    # -- the step, eager or recorded ---------------------------------------------------------
    def _eager(self, optimizer, lr, hr):
        """Lightning's automatic step exactly: forward, loss, the non-finite guard, zero_grad,
        backward, step, EMA. -> (loss, terms) detached, or None when the guard skipped it."""
        a = self.approach
        total, terms = a.loss(a.net(lr), hr)
        optimizer.zero_grad(set_to_none=True)
        ok = a.finite(total, terms)
        if ok:
            total.backward()
            optimizer.step()
        if a.ema is not None:
            a.ema.update(a.net)
        return (total.detach(), {k: v.detach() for k, v in terms.items()}) if ok else None

    def _captured_body(self, optimizer) -> None:
        a, s = self.approach, self.static
        total, terms = a.loss(a.net(s["lr"]), s["hr"])
        total.backward()
        optimizer.step()
        if a.ema is not None:
            a.ema.update(a.net, weight=s["ema_weight"])
        s["bad"].logical_or_(~torch.isfinite(total.detach()))  # cannot skip: remember it (no sync)
        s["total"], s["terms"] = total.detach(), {k: v.detach() for k, v in terms.items()}

    def _record(self, optimizer):
        """Capture `_captured_body` (its kernels are recorded, not run) -> the graph."""
        graph = torch.cuda.CUDAGraph()
        options = {"capture_error_mode": "thread_local"}  # other threads (pin memory) may allocate
        if self.check_liveness and "check_input_liveness" in inspect.signature(torch.cuda.graph).parameters:
            options["check_input_liveness"] = True
        # Lightning 2.6's autocast does not cache casts; an autocast that does (a caller's own)
        # would hand the graph casts made outside it. Only then is the state changed: under
        # speed.compile a different autocast state would recompile inside the capture
        no_cache = contextlib.nullcontext()
        if torch.is_autocast_enabled("cuda") and torch.is_autocast_cache_enabled():
            no_cache = torch.autocast("cuda", torch.get_autocast_dtype("cuda"), cache_enabled=False)
        # the outer stream context restores this stream even when a failed capture's exit cannot
        with torch.cuda.stream(torch.cuda.current_stream()):
            with torch.cuda.graph(graph, **options), no_cache:
                self._captured_body(optimizer)
        return graph

    def _capture(self, optimizer) -> None:
        """Record the step with GPU-tensor learning rates; floats back in the groups whatever happens."""
        s, groups = self.static, optimizer.param_groups
        floats = [g["lr"] for g in groups]
        s["lr_t"] = [torch.tensor(float(v), device=s["lr"].device) for v in floats]
        s["bad"] = torch.zeros((), dtype=torch.bool, device=s["lr"].device)
        optimizer.zero_grad(set_to_none=True)  # backward in the capture allocates the static grads
        try:
            for g, t in zip(groups, s["lr_t"]):
                g["lr"] = t
            with holding_blocks(self.held):
                self.graph = self._record(optimizer)
        finally:
            for g, value in zip(groups, floats):
                g["lr"] = value

    def fall_back(self, reason: str, optimizer=None) -> None:
        """Run eager from now on, with one line, leaving what an eager run would have."""
        if self.capture:
            log.warning("speed.cuda_graph: runs eager: %s", reason)
        self.capture, self.graph, self.held = False, None, []
        for key in ("lr_t", "bad", "total", "terms", "ema_weight"):
            self.static.pop(key, None)
        if optimizer is not None:
            set_capturable(optimizer, False)
            optimizer.zero_grad(set_to_none=True)  # gradients a failed capture allocated in its pool

    @contextlib.contextmanager
    def _side_stream(self):
        if self.static["lr"].device.type != "cuda":
            yield
            return
        side, current = torch.cuda.Stream(), torch.cuda.current_stream()
        side.wait_stream(current)
        with torch.cuda.stream(side):
            yield
        current.wait_stream(side)

    def __call__(self, batch: dict, optimizer):
        """One training step on `batch` -> (loss, terms), or None when the eager guard skipped it."""
        lr, hr = batch["lr"], batch["hr"]
        key = (tuple(lr.shape), tuple(hr.shape), lr.dtype, hr.dtype)
        if self.capture and self.shape is None:
            reason = net_reason(self.approach.net, lr.shape[-2:])
            if reason:
                self.fall_back(reason, optimizer)
            else:
                self.shape = key
                self.static.update(lr=torch.empty_like(lr), hr=torch.empty_like(hr),
                                   ema_weight=torch.zeros((), device=lr.device))
        if not self.capture:
            return self._eager(optimizer, lr, hr)
        if key != self.shape:  # eager on the batch itself: the buffers and outputs stay the graph's
            if not self.warned_shape:
                log.info("speed.cuda_graph: a batch of shape %s differs from the captured %s: it runs eager",
                         key[0], self.shape[0])
                self.warned_shape = True
            return self._eager(optimizer, lr, hr)
        s = self.static
        s["lr"].copy_(lr, non_blocking=True)
        s["hr"].copy_(hr, non_blocking=True)
        if self.graph is None and self.eager_steps < WARMUP:
            self.eager_steps += 1
            with self._side_stream():
                return self._eager(optimizer, s["lr"], s["hr"])
        if self.graph is None:
            try:
                self._capture(optimizer)
            except Exception as e:  # noqa: BLE001 - any net, any reason: train on, eager
                first = (str(e).strip().splitlines() or [""])[0][:200]
                self.fall_back(f"the capture failed ({type(e).__name__}: {first})", optimizer)
                return self._eager(optimizer, s["lr"], s["hr"])
        ema = self.approach.ema
        if ema is not None:
            s["ema_weight"].fill_(1.0 - ema.decay_at(ema.updates))
            ema.updates += 1
        self.graph.replay()
        self.replays += 1
        return s["total"], s["terms"]

    def poisoned(self) -> bool:
        """Did a replay since the last check apply a NaN/Inf loss? (one device read, only
        when there were replays)."""
        return bool(self.replays and "bad" in self.static and bool(self.static["bad"]))

    def after_schedule(self, optimizer) -> None:
        """The schedule wrote float learning rates: pass them to the graph's tensors (no sync)."""
        for g, t in zip(optimizer.param_groups, self.static.get("lr_t", [])):
            t.fill_(float(g["lr"]))
