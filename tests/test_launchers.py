"""Hydra sweeps through hydra-submitit-launcher: srlab's launcher configs compose, a SLURM sweep
becomes the sbatch script we mean, and a local sweep really runs its jobs in other processes."""
import json
import os
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from srlab.config.compose import CONFIG_DIR
from tests.conftest import write_images

pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                    reason="hydra-submitit-launcher not installed: .venv/bin/pip install -e '.[launchers]'")

TINY = ["experiment=unet", "data=folder", "data.num_workers=0", "data.batch_size=4", "data.patch_size=32", "net.channels=8",
        "net.depth=1", "net.space_to_depth=1", "trainer.accelerator=cpu", "trainer.max_time=null"]


def launcher(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=["hydra.sweep.dir=/tmp/sweep", *overrides], return_hydra_config=True)
    return instantiate(cfg.hydra.launcher)


def test_srlab_launchers_extend_the_plugin_ones_which_stay_selectable():
    slurm = launcher("hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4")
    assert type(slurm).__name__ == "SlurmLauncher"
    assert slurm.params["tasks_per_node"] == 4  # one SLURM task (DDP rank) per GPU
    assert slurm.params["timeout_min"] == 1440 and slurm.params["name"] == "srlab"
    local = launcher("hydra/launcher=local")
    assert type(local).__name__ == "LocalLauncher"
    assert local.params["gpus_per_node"] == 1  # else submitit hides every GPU from the jobs
    for name in ("submitit_slurm", "submitit_local"):  # the plugin's own options, its defaults
        assert launcher(f"hydra/launcher={name}").params["timeout_min"] == 60


def test_slurm_sweep_submits_one_array_job_with_a_task_per_gpu(tmp_path):
    """A fake `sbatch` on PATH keeps the script that submitit hands it, then fails the submission
    (submitit also wants to see an `srun`)."""
    bin_dir, script = tmp_path / "bin", tmp_path / "submitted.sh"
    bin_dir.mkdir()
    for name, body in (("sbatch", f'cp "$1" {script}\n'), ("srun", "")):
        (bin_dir / name).write_text(f'#!/bin/sh\n{body}echo "{name}: no cluster here" >&2\nexit 1\n')
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    res = subprocess.run([sys.executable, "-m", "srlab.cli.train", "-m", "hydra/launcher=slurm", "loss=mse,l1",
                          "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4", "trainer=multinode",
                          f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode != 0 and script.exists(), res.stderr[-2000:]
    lines = set(script.read_text().splitlines())
    for line in ("--array=0-1%2", "--partition=gpu", "--gpus-per-node=4", "--ntasks-per-node=4", "--nodes=1",
                 "--cpus-per-task=8", "--mem=64GB", "--time=1440", "--job-name=srlab"):
        assert f"#SBATCH {line}" in lines, line


@pytest.mark.slow  # 10-21 s of subprocesses: make test-full (make test stays under 6 min)
def test_local_sweep_runs_each_job_in_its_own_process(tmp_path):
    write_images(tmp_path / "hr", 4, size=(64, 64))
    out = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two jobs at once share the cores
    proc = subprocess.Popen([sys.executable, "-m", "srlab.cli.train", "-m", "hydra/launcher=submitit_local", "loss=mse,l1",
                             *TINY, f"data.train_dir={tmp_path / 'hr'}", "trainer.max_steps=2",
                             "trainer.val_check_interval=2", "logger=csv", f"hydra.sweep.dir={out}",
                             "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    seen, job_ids = {}, set()
    for job in sorted(p for p in out.iterdir() if p.name.isdigit()):
        loss = [o.split("=", 1)[1] for o in yaml.safe_load((job / ".hydra/overrides.yaml").read_text())
                if o.startswith("loss=")]
        seen[loss[0]] = job
        assert list(yaml.safe_load((job / ".hydra/config.yaml").read_text())["loss"]["terms"]) == loss
        assert json.loads((job / "metrics.json").read_text())["train/steps"] == 2
        assert (job / "csv" / "metrics.csv").is_file()
        # submitit's job id (the local job's process id) is recorded by the launcher in the job's config
        job_id = str(yaml.safe_load((job / ".hydra/hydra.yaml").read_text())["hydra"]["job"]["id"])
        assert job_id not in (str(os.getpid()), str(proc.pid))
        log = (out / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
        assert "Job completed successfully" in log
        job_ids.add(job_id)
    assert {loss: job.name for loss, job in seen.items()} == {"mse": "0", "l1": "1"}
    assert len(job_ids) == 2  # one process per job
