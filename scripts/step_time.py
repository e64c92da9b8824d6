"""Seconds per training step of a net at its experiment's patch: forward, L1, backward, Adam.

What one update costs on this machine, without data loading or the framework (`make bench`
measures those): the numbers in benchmarks/RESULTS.md ("The papers' nets on a CPU").

    python scripts/step_time.py --nets rrdbnet,rcan,swinir,swinir_light --batch 1 --steps 3
The patch is the experiment's (configs/experiment/<net>.yaml, HR px); --patch overrides it.
Printed: median wall seconds per step (min, max) and median CPU seconds (all threads summed).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from srlab.config.compose import compose_config  # noqa: E402


def step_times(name: str, batch: int, steps: int, warmup: int, patch: int | None) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_config("train", [f"experiment={name}", "data.train_dir=unused", "logger=none"], Path(run_dir))
    net = instantiate(cfg.net).train()
    scale, patch = int(cfg.scale), patch or int(cfg.data.patch_size)
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg.approach.optimizer.lr))
    lr, hr = torch.rand(batch, 3, patch // scale, patch // scale), torch.rand(batch, 3, patch, patch)
    times, cpu = [], []
    for i in range(warmup + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = F.l1_loss(net(lr), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:  # wall clock, and CPU time of all threads (what a busy neighbour cannot inflate)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"net": name, "params": sum(p.numel() for p in net.parameters()), "patch_hr": patch,
            "patch_lr": patch // scale, "batch": batch, "s_per_step": statistics.median(times),
            "cpu_s_per_step": statistics.median(cpu),
            "min_s": min(times), "max_s": max(times)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", default="rrdbnet,rcan,swinir,swinir_light")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--patch", type=int, default=None, help="HR px; default: the experiment's")
    args = p.parse_args()
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'net':<14} {'params':>11} {'HR/LR patch':>12} {'batch':>6} {'s/step':>8} {'min':>7} {'max':>7}"
          f" {'cpu s':>7}")
    for name in args.nets.split(","):
        r = step_times(name, args.batch, args.steps, args.warmup, args.patch)
        print(f"{r['net']:<14} {r['params']:>11,} {r['patch_hr']:>6}/{r['patch_lr']:<5} {r['batch']:>6} "
              f"{r['s_per_step']:>8.2f} {r['min_s']:>7.2f} {r['max_s']:>7.2f} {r['cpu_s_per_step']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
