"""Speed switches for the net being trained: channels_last memory format and torch.compile.

Both are config (`speed.channels_last`, `speed.compile`) rather than code, because whether
they win depends on the net and the card: `make bench` measures each against the same net
without it, and a switch is on by default only where it won (benchmarks/RESULTS.md).

- channels_last: NHWC weights and inputs; tensor-core convolutions (bf16/fp16 on Volta and
  newer) run without layout transposes. A forward pre-hook converts every 4-D input, so data
  modules, approaches and losses need not know.
- compile: `nn.Module.compile()` compiles the net in place, so its state_dict keys (and
  checkpoints, srlab-eval, srlab-upscale) are unchanged; the first steps pay the compile time.
- cuda_graph: the regression approach's whole training step captured once and replayed as one
  CUDA graph (srlab/training/cuda_graph.py); other approaches and the CPU run eager. What the
  config decides is decided here; what needs the built trainer (DDP, FSDP, DeepSpeed), the
  first batch (nets that copy from the host) or the optimizer (no `capturable`) is decided by
  the approach then, and a capture that fails for any reason also falls back to eager.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from srlab.errors import SrlabError

log = logging.getLogger(__name__)


def _to_channels_last(module: nn.Module, args: tuple, kwargs: dict):
    def conv(x):
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    return tuple(conv(a) for a in args), {k: conv(v) for k, v in kwargs.items()}


def resolve(value, accelerator_is_gpu: bool) -> bool:
    """true / false, or "gpu": on only when training runs on a CUDA device."""
    if isinstance(value, bool):
        return value
    if value in ("gpu", "cuda"):
        return accelerator_is_gpu
    raise SrlabError(f"speed switches take true, false or gpu, got {value!r}")


def apply_speed_switches(net: nn.Module, channels_last: bool = False, compile: bool = False) -> nn.Module:
    """Set the switches on `net` in place (and return it)."""
    if channels_last:
        net.to(memory_format=torch.channels_last)
        net.register_forward_pre_hook(_to_channels_last, with_kwargs=True)
    if compile:
        net.compile()
    return net


def trains_on_gpu(trainer_cfg) -> bool:
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def apply_speed_config(model: nn.Module, speed_cfg, trainer_cfg) -> None:
    """`speed.*` of the config on an approach, once it exists: its EMA copy (if any) gets
    channels_last too; only the trained `net` is compiled."""
    on_gpu = trains_on_gpu(trainer_cfg)
    channels_last = resolve(speed_cfg.get("channels_last", False), on_gpu)
    apply_speed_switches(model.net, channels_last, resolve(speed_cfg.get("compile", False), on_gpu))
    if resolve(speed_cfg.get("cuda_graph", False), on_gpu):
        from srlab.training.cuda_graph import why_eager

        reason = why_eager(model, trainer_cfg, on_gpu)
        if reason and not reason.startswith("no CUDA"):
            log.info("speed.cuda_graph: runs eager: %s", reason)
        elif hasattr(model, "use_graphed_step"):
            if reason:
                log.info("speed.cuda_graph: %s", reason)
            model.use_graphed_step(capture=reason is None)
    if getattr(model, "ema", None) is not None:
        apply_speed_switches(model.ema.module, channels_last, False)
