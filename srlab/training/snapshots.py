"""Generator snapshots: the (EMA) net every N steps, as a file the rest of the field opens.

GAN runs are picked by eye: the step with the best LPIPS is not always the one whose textures
look right, and traiNNer-redux users keep every few thousand steps' generator to compare in
chaiNNer. `Snapshots` writes, at the first validation on or after each multiple of
`every_n_steps`, the weights validation just measured (`eval_net`: the EMA copy when on) to
`snapshots/step<N>.safetensors` — the bare state dict spandrel detects (srlab.inference.
interchange; checked once with spandrel, on the first snapshot) — or, for a net without a
spandrel counterpart (EDSR, U-Net), `step<N>.srlab.safetensors` with srlab's net config in its
metadata (srlab-upscale / srlab-eval read it). `snapshots/measures.csv` gets one row per
snapshot: step, file and every `val/*` value of that validation, so the files can be ranked.
Off by default (`every_n_steps: null`); snapshots are taken at validations, so N is best a
multiple of `trainer.val_check_interval`.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch

from srlab.errors import SrlabError
from srlab.ops.untrusted_files import EXPORT_FORMAT

log = logging.getLogger(__name__)


class Snapshots(pl.Callback):
    def __init__(self, dirpath: str, every_n_steps: int | None = None):
        if every_n_steps is not None and int(every_n_steps) < 1:
            raise SrlabError(f"callbacks.snapshots.every_n_steps={every_n_steps}: use a positive number of steps or null")
        self.dirpath = Path(dirpath)
        self.every = int(every_n_steps) if every_n_steps else 0
        self._spandrel: tuple[bool, set] | None = None  # (has a counterpart, constant buffers left out)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self.every or trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        step = int(trainer.global_step)
        rows = self._read()
        last = max((int(r["step"]) for r in rows), default=0)
        if step == 0 or step // self.every <= last // self.every:
            return
        path = self.write(pl_module, step)
        row = {"step": step, "file": path.name}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items()
                    if k.startswith("val/") and (not torch.is_tensor(v) or v.numel() == 1)})
        self._write_rows(rows + [row])

    def write(self, pl_module, step: int) -> Path:
        from safetensors.torch import save_file

        from srlab.inference.interchange import bare_state_dict, interchange_state_dict

        net = pl_module.eval_net
        config = getattr(pl_module, "srlab_config", None) or {}
        net_config, scale = config.get("net"), int(getattr(net, "scale", pl_module.scale))
        if self._spandrel is None:
            try:
                state, descriptor, dropped = interchange_state_dict(net, scale, net_config)
                self._spandrel = (True, set(dropped))
                log.info("snapshots: spandrel reads them as %s x%d", descriptor.architecture.name, descriptor.scale)
            except SrlabError as err:
                self._spandrel = (False, set())
                log.info("snapshots: .srlab.safetensors (%s)", err)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        has_counterpart, dropped = self._spandrel
        if has_counterpart:
            state = {k: v for k, v in bare_state_dict(net, net_config).items() if k not in dropped}
            path, meta = self.dirpath / f"step{step:07d}.safetensors", None
        else:
            state = net.state_dict()
            path = self.dirpath / f"step{step:07d}.srlab.safetensors"
            meta = {"format": EXPORT_FORMAT, "net_config": json.dumps(net_config), "scale": str(scale)}
        state = {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}
        tmp = path.with_name(path.name + ".tmp")
        save_file(state, str(tmp), metadata=meta)
        tmp.replace(path)  # never a half-written snapshot under the final name
        return path

    @property
    def csv_path(self) -> Path:
        return self.dirpath / "measures.csv"

    def _read(self) -> list[dict]:
        if not self.csv_path.is_file():
            return []
        with self.csv_path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _write_rows(self, rows: list[dict]) -> None:
        columns = ["step", "file"] + sorted({k for r in rows for k in r} - {"step", "file"})
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.csv_path)
