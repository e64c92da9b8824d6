"""W&B with sweeps: one run per job, named after what the job varies, grouped by its sweep.

A real 2-job multirun with W&B offline, in a subprocess as a user would start it; the
offline run files are read back record by record (W&B's LevelDB-style log of protobufs).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from srlab.runs.names import group_of_checkpoint, run_group, run_name
from tests.conftest import FAST

wandb_pb2 = pytest.importorskip("wandb.proto.wandb_internal_pb2")


def wandb_records(path: Path) -> list:
    """Records of an offline `.wandb` file: 7-byte file header, then 32 KiB blocks of
    chunks with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    data, pos, buf, out = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer too short for a header: padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            rec = wandb_pb2.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


@pytest.mark.slow  # 10-21 s of subprocesses: make test-full (make test stays under 6 min)
def test_multirun_gives_one_named_grouped_run_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    cmd = [sys.executable, "-m", "srlab.cli.train", "-m", "loss=mse,l1", *FAST, "logger=wandb",
           "trainer.max_steps=2", "trainer.val_check_interval=2", "tags=[sweeptest]",
           f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = {}
    for job in ("0", "1"):
        files = list((sweep / job / "wandb").glob("offline-run-*/*.wandb"))
        assert len(files) == 1, f"job {job}: expected its own W&B run, found {files}"
        records = wandb_records(files[0])
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        history = [r for r in records if r.WhichOneof("record_type") == "history"]
        keys = {item.key or "/".join(item.nested_key) for h in history for item in h.history.item}
        runs[job] = (run, keys)
    (r0, k0), (r1, k1) = runs["0"], runs["1"]
    assert (r0.display_name, r1.display_name) == ("loss=mse", "loss=l1")
    assert r0.run_group == r1.run_group == str(sweep)
    assert r0.job_type == r1.job_type == "train" and list(r0.tags) == ["sweeptest"]
    assert r0.run_id != r1.run_id
    assert "val/psnr_y" in k0 and "val/psnr_y" in k1  # each run holds its own job's metrics


def test_names_outside_a_sweep(make_cfg, tmp_path):
    cfg = make_cfg(["loss=l1", "scale=2", "logger=wandb"], fast=False)
    assert cfg.logger.wandb.name == "loss=l1,scale=2"  # logger= is plumbing, not a difference
    assert cfg.logger.wandb.group == str(tmp_path / "run") and cfg.logger.wandb.job_type == "train"
    plain = make_cfg(["logger=wandb", "experiment=edsr"], fast=False)
    assert plain.logger.wandb.name == "experiment=edsr"
    assert run_name("dflt") and run_group()  # a Hydra config is set in this process


def test_eval_joins_the_training_group(tmp_path):
    run = tmp_path / "sweep" / "3"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "best.ckpt"
    assert group_of_checkpoint(ckpt, {"logger": {"wandb": {"group": "outputs/x"}}}) == "outputs/x"
    assert group_of_checkpoint(ckpt, {"logger": {"csv": {}}}) == str(run.resolve())
    (tmp_path / "sweep" / "multirun.yaml").write_text("hydra: {}\n")
    assert group_of_checkpoint(ckpt, None) == str((tmp_path / "sweep").resolve())
