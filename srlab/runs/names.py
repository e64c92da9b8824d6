"""What a run is called and where it belongs, for W&B (and anything else that groups runs).

A sweep's runs must be told apart at a glance and kept together: a run is named after what
makes it differ, and grouped by the directory it (or its sweep) lives in.
- name: the job's overrides that the sweep varies (`loss=l1,scale=2`): keys with sweep syntax
  in the sweep's `multirun.yaml` (the command line as typed; Hydra's basic sweeper writes it
  before the first job) and the keys of a search space (`hydra.sweeper.params`: Optuna), so
  it works with any launcher, in the job's own process or on a cluster node. A single run: its command-line overrides minus plumbing
  (logger, callbacks, paths, hydra). No overrides: the experiment's name, else a default.
- group: the sweep directory for a multirun or Optuna study, the run directory otherwise, so
  `srlab-eval` of a checkpoint can join its training run's group (`group_of_checkpoint`).
Both are OmegaConf resolvers (`${srlab.run_name:<default>}`, `${srlab.run_group:}`) used by
configs/logger/wandb.yaml; outside a Hydra job they fall back to the default / "".
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PLUMBING = ("hydra.", "logger", "callbacks", "paths.", "+logger", "+callbacks")
MAX_NAME = 120


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _hydra():
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _multirun(hc) -> bool:
    from hydra.types import RunMode

    return hc.mode == RunMode.MULTIRUN


def swept_keys(sweep_dir: Path, hydra_cfg=None) -> set[str]:
    """Keys a sweep varies: sweep syntax on its command line (`<sweep_dir>/multirun.yaml`),
    plus the search space of the sweeper (`hydra_cfg.sweeper.params`, the job's own copy)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys: set[str] = set()
    if (Path(sweep_dir) / "multirun.yaml").is_file():
        cfg = OmegaConf.load(Path(sweep_dir) / "multirun.yaml")
        typed = list(OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or [])
        parsed = OverridesParser.create().parse_overrides(typed)
        keys |= {o.key_or_group for o in parsed if o.is_sweep_override()}
    params = OmegaConf.select(hydra_cfg, "sweeper.params", default=None) if hydra_cfg is not None else None
    return keys | {str(k) for k in (params or {})}


def run_name(default: str = "run") -> str:
    hc = _hydra()
    if hc is None:
        return default
    overrides = [o for o in hc.overrides.task if not _key(o).startswith(PLUMBING)]
    if _multirun(hc):
        swept = swept_keys(Path(hc.sweep.dir), hc)
        overrides = [o for o in overrides if _key(o) in swept] or overrides
    name = ",".join(o.lstrip("+") for o in overrides)
    if not name:
        name = hc.runtime.choices.get("experiment") or default
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 3] + "..."


def run_group() -> str:
    hc = _hydra()
    if hc is None:
        return ""
    return str(hc.sweep.dir if _multirun(hc) else hc.runtime.output_dir)


def group_of_checkpoint(ckpt_path: str | Path, srlab_config: dict | None) -> str:
    """The W&B group of the training run that wrote `ckpt_path` (<run>/checkpoints/x.ckpt)."""
    group = ((srlab_config or {}).get("logger") or {}).get("wandb", {}) or {}
    if group.get("group"):
        return str(group["group"])
    run_dir = Path(ckpt_path).resolve().parent.parent
    return str(run_dir.parent if (run_dir.parent / "multirun.yaml").is_file() else run_dir)


for _name, _fn in (("srlab.run_name", run_name), ("srlab.run_group", run_group)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)
