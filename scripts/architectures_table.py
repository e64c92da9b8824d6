"""The architecture table of docs/architectures.md: for every spandrel-backed config of
configs/net, its parameters at x4, license, CPU seconds per training step and whether spandrel
reads its export back (same architecture, scale and output). ONNX status comes from
tests/test_spandrel_onnx.py (measured on tiny nets).

    .venv/bin/python scripts/architectures_table.py [name ...]   # prints Markdown rows

Step: batch 2 of 32x32 LR patches at x4, fp32, forward + L1 + backward + Adam, median of 3
after one warm-up, on this machine's CPU threads (2 on the project's CI machine).
"""
import re
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from srlab.inference.interchange import interchange_state_dict  # noqa: E402
from srlab.nets.spandrel_arch import SpandrelNet  # noqa: E402
from tests.test_spandrel_onnx import STATUS  # noqa: E402


def step_seconds(net: SpandrelNet) -> float:
    side = max(32, net.minimum)
    side = -(-side // net.multiple) * net.multiple
    lr, hr = torch.rand(2, 3, side, side), torch.rand(2, 3, side * 4, side * 4)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    net.train()
    times = []
    for _ in range(4):
        start = time.perf_counter()
        loss = (net(lr) - hr).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * (32 / side) ** 2  # per 32x32 LR patch pair


def row(name: str) -> str:
    text = (ROOT / "configs" / "net" / f"{name}.yaml").read_text()
    cfg = yaml.safe_load(text)
    license = re.search(r"License of the architecture: (.+)\.$", text, re.M)
    kwargs = {k: v for k, v in cfg.items() if k not in ("_target_", "scale")}
    torch.manual_seed(0)
    net = SpandrelNet(scale=4, **kwargs)
    params = sum(p.numel() for p in net.parameters())
    seconds = step_seconds(net)
    try:
        state, descriptor, dropped = interchange_state_dict(net, 4)
        mb = sum(v.numel() * v.element_size() for v in state.values()) / 2**20
        trip = f"yes ({mb:.1f} MB" + (f", {len(dropped)} buffers left out)" if dropped else ")")
    except Exception as e:  # noqa: BLE001
        trip = f"no: {e}"[:80]
    return (f"| `{name}` | {cfg['arch']} | {params / 1e6:.2f} M | {license.group(1) if license else '?'} | "
            f"{seconds:.2f} | {STATUS.get(name, 'not measured')} | {trip} |")


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.stem for p in (ROOT / "configs" / "net").glob("*.yaml")
                                   if "SpandrelNet" in p.read_text() and p.stem != "aurasr")
    print("| net | spandrel class | params x4 | license | CPU s/step | ONNX | spandrel reads the export |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        print(row(name), flush=True)
