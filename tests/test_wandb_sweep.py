"""configs/wandb_sweep.yaml: the command a W&B agent builds for a trial is one srlab-train accepts.

The agent's own pieces are used where wandb exposes them (macro arguments, ${envvar:} expansion);
its replacement loop (wandb_agent.Agent._command_run) is repeated in `agent_command`.
"""
import math
import random
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from srlab.config.compose import CONFIG_DIR

sweep_utils = pytest.importorskip("wandb.sdk.launch.sweeps.utils")
SWEEP = yaml.safe_load((CONFIG_DIR / "wandb_sweep.yaml").read_text())


def sample(spec: dict, rng: random.Random):
    """One value of a W&B parameter spec (the distributions this file uses)."""
    if "values" in spec:
        return rng.choice(spec["values"])
    kind = spec.get("distribution", "uniform")
    if kind == "log_uniform_values":
        return math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"])))
    if kind == "uniform":
        return rng.uniform(spec["min"], spec["max"])
    if kind == "int_uniform":
        return rng.randint(spec["min"], spec["max"])
    raise NotImplementedError(f"teach sample() W&B's {kind}")


def agent_command(sweep: dict, params: dict) -> list[str]:
    """What `wandb agent` runs for a trial with these parameter values."""
    macros = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    macros.update(env=["/usr/bin/env"], interpreter=["python"], program=[sweep["program"]])
    command = []
    for item in sweep_utils.create_sweep_command(list(sweep["command"])):
        item = str(item)
        if item.startswith("${") and item.endswith("}"):
            command += macros.get(item[2:-1]) or []
        else:
            command.append(item)
    return command


def test_sweep_file_is_what_wandb_expects():
    assert SWEEP["method"] in ("bayes", "random")
    assert SWEEP["metric"] == {"name": "val/psnr_y", "goal": "maximize"}
    for name, spec in SWEEP["parameters"].items():
        bounds = [spec[k] for k in ("min", "max") if k in spec]
        assert all(isinstance(b, (int, float)) for b in bounds), f"{name}: write 0.0001, not 1e-4"
        assert "values" in spec or len(bounds) == 2, name
    assert "${args_no_hyphens}" in SWEEP["command"]


def test_agent_command_for_a_sample_point_is_accepted_by_srlab_train(monkeypatch):
    rng = random.Random(1)  # a point away from the defaults (lr 1e-3, 64 channels, mse)
    params = {name: sample(spec, rng) for name, spec in SWEEP["parameters"].items()}
    command = agent_command(SWEEP, params)
    assert command[:2] == ["/usr/bin/env", ".venv/bin/srlab-train"]
    args = command[2:]
    for name, value in params.items():
        assert f"{name}={value}" in args  # Hydra's key=value, no leading dashes
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw33p")
    monkeypatch.setenv("WANDB_RUN_ID", "run42")
    res = subprocess.run([sys.executable, "-m", "srlab.cli.train", *args, "--cfg", "job"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = OmegaConf.create(res.stdout)
    for name, value in params.items():
        option = CONFIG_DIR / name / f"{value}.yaml"
        if option.is_file():  # a config group choice: the option's own values are in its node
            own = OmegaConf.load(option)
            own.pop("defaults", None)
            assert OmegaConf.merge(cfg[name], own) == cfg[name], name
        else:
            assert OmegaConf.select(cfg, name) == pytest.approx(value), name
    # the trial's run directory comes from the ids the agent puts in the environment
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        full = compose("train", overrides=args, return_hydra_config=True)
    assert full.hydra.run.dir == "outputs/train/wandb_sweeps/sw33p/run42"
