"""Faults cost at most the steps since the last save (srlab/training/faults.py): SIGTERM / SIGUSR1
save last.ckpt at the current step and exit 0; under SLURM, SIGUSR1 requeues and the
requeued job resumes; last.ckpt is also written on a timer; a save is never half a file."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from srlab.training.faults import AtomicCheckpointIO

TINY = ["experiment=unet", "logger=none", "trainer.max_time=null", "data.num_workers=0", "data.batch_size=4", "data.patch_size=32",
        "net.channels=8", "net.depth=2", "net.space_to_depth=1", "trainer.val_check_interval=100",
        "callbacks.timed_checkpoint.train_time_interval.minutes=0.01"]  # last.ckpt every ~0.6 s


def start(run_dir: Path, *extra, env=None) -> subprocess.Popen:
    log = open(run_dir.parent / f"{run_dir.name}.out", "w")
    return subprocess.Popen([sys.executable, "-m", "srlab.cli.train", *TINY, f"hydra.run.dir={run_dir}", *extra],
                            stdout=log, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, (path.parent.parent.parent / f"{path.parent.parent.name}.out").read_text()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.2)


def step_of(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)])
def test_signal_saves_last_checkpoint_at_current_step_and_exits_cleanly(sig, tmp_path):
    run = tmp_path / "run"
    proc = start(run, "trainer.max_steps=100000")
    last = run / "checkpoints" / "last.ckpt"
    wait_for(last, proc)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 0
    out = (tmp_path / "run.out").read_text()
    saved = [line for line in out.splitlines() if line.startswith("training stopped on a stop signal: saved")]
    assert len(saved) == 1, out
    step = step_of(last)
    assert f"at step {step};" in saved[0] and step >= 1


@pytest.mark.slow
def test_slurm_sigusr1_requeues_and_the_requeued_job_resumes(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.log'}\n")
    (fake / "scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "srlab",
           "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "localhost", "SLURM_NTASKS_PER_NODE": "1",
           "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
    run = tmp_path / "run"
    proc = start(run, "trainer.max_steps=100000", env=env)
    wait_for(run / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGUSR1)  # SLURM's warning before the time limit (--signal=SIGUSR1@90)
    wait_for(run / "hpc_ckpt_1.ckpt", proc)
    proc.send_signal(signal.SIGTERM)  # then the job is stopped
    assert proc.wait(timeout=60) == 0
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    hpc_step = step_of(run / "hpc_ckpt_1.ckpt")

    # the requeued job: same command, same run directory, resumes from the SLURM checkpoint
    requeued = start(run, f"trainer.max_steps={hpc_step + 3}", env=env)
    assert requeued.wait(timeout=180) == 0
    out = (tmp_path / "run.out").read_text()
    assert f"Restoring states from the checkpoint path at {run / 'hpc_ckpt_1.ckpt'}" in out
    assert f"steps {hpc_step + 3}," in out
    assert not list(run.glob("hpc_ckpt_*.ckpt"))  # the finished run validated its own weights


def test_timed_checkpoint_writes_last_without_validation(make_cfg):
    from srlab.cli.train import build

    cfg = make_cfg(["trainer.max_steps=12", "trainer.val_check_interval=100",
                    "callbacks.timed_checkpoint.train_time_interval.minutes=0.001"])
    datamodule, model, trainer, _ = build(cfg)
    trainer.fit(model, datamodule=datamodule)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert 1 <= step_of(last) <= 12 and not (last.parent / "best.ckpt").exists()


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def dies_half_way(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # as if killed while writing

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert step_of(path) == 1 and os.listdir(tmp_path) == ["last.ckpt"]


def test_kill_9_during_saves_never_leaves_a_truncated_checkpoint(tmp_path):
    """A process that saves a 64 MB checkpoint over and over is killed at random moments;
    every time, last.ckpt loads (the old or the new one, whole)."""
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 0, "w": torch.zeros(1)}, path)
    code = ("import sys, torch; from srlab.training.faults import AtomicCheckpointIO; io = AtomicCheckpointIO()\n"
            "for i in range(1, 10**6): io.save_checkpoint({'global_step': i, 'w': torch.rand(16 * 2**20)}, sys.argv[1])")
    for delay in (0.4, 0.9, 1.3):
        proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert step_of(path) >= 0  # loads: a whole checkpoint
