"""Reading training run directories back: config, overrides, final metrics, val curve, status.

Everything `srlab-compare` knows comes from files a run leaves in its directory (Hydra's
`.hydra/`, `metrics.json`, `val_history.csv`, logs), never from a logger's service: runs can
be compared offline, long after, whatever logger they used.
"""
from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from srlab.errors import SrlabError

# Folders inside a run directory that never hold another run: not worth walking (wandb/ is big).
NOT_RUNS = {".hydra", "checkpoints", "samples", "wandb", "csv", "tensorboard", "images", "__pycache__"}


@dataclass
class Run:
    dir: Path
    config: dict  # dotted key -> value, interpolations resolved where they can be
    written: dict  # dotted key -> interpolation as written (`${scale}`), for keys that are one
    choices: dict  # config group -> option, e.g. {"loss": "l1"}
    overrides: list[str]
    metrics: dict | None  # metrics.json; None when the run did not get that far
    status: str  # ok | failed | unfinished
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, val/psnr_y)
    name: str = ""


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file()


def is_training_run(path: Path) -> bool:
    """srlab-eval/upscale runs have a .hydra/ too; only a training config has a trainer."""
    return any(line.startswith("trainer:") for line in (path / ".hydra" / "config.yaml").read_text().splitlines())


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories at or below each path, in path order, multirun jobs by number. A path
    named directly is taken as it is; below a folder only training runs are."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise SrlabError(f"no such folder: {path}")
        if is_run_dir(path):
            found.append(path)
            continue
        below = []
        for root, dirs, _ in os.walk(path):
            if is_run_dir(Path(root)):
                if is_training_run(Path(root)):
                    below.append(Path(root))
                dirs.clear()  # runs do not nest
            else:
                dirs[:] = [d for d in dirs if d not in NOT_RUNS]
        # "10" after "9": multirun jobs are numbered
        found += sorted(below, key=lambda p: [(0, int(s), "") if s.isdigit() else (1, 0, s) for s in p.parts])
    unique = {p.resolve(): p for p in reversed(found)}  # the same run given twice counts once
    return [p for p in found if unique.get(p.resolve()) is p]


def flatten(node: DictConfig, prefix: str = "", written: dict | None = None) -> dict:
    """Dotted keys -> leaf values; lists stay whole (one value). An interpolation is resolved
    when it can be (`${scale}`) and kept as written when not (`${hydra:...}` outside Hydra);
    one that points at a whole node (`${degradation}`) stays as written, that node being
    listed under its own keys. `written` collects the text of every interpolation."""
    written = {} if written is None else written
    raw = OmegaConf.to_container(node, resolve=False)
    out = {}
    for key in node.keys():
        full = f"{prefix}{key}"
        if OmegaConf.is_interpolation(node, key):
            written[full] = raw[key]
        try:
            value = node[key]
        except Exception:  # noqa: BLE001 - unresolvable or ??? : show what was written
            out[full] = raw[key]
            continue
        if OmegaConf.is_interpolation(node, key) and isinstance(value, (DictConfig, ListConfig)):
            out[full] = raw[key]
        elif isinstance(value, DictConfig):
            out.update(flatten(value, f"{full}.", written) if len(value) else {full: {}})
        elif isinstance(value, ListConfig):
            try:
                out[full] = OmegaConf.to_container(value, resolve=True)
            except Exception:  # noqa: BLE001
                out[full] = raw[key]
        else:
            out[full] = value
    return out


def read_config(run_dir: Path) -> tuple[dict, dict]:
    """(flat config, interpolations as written) of a run."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    if not isinstance(cfg, DictConfig):
        return {}, {}
    # Hydra saves `paths.output_dir: ${hydra:runtime.output_dir}`; with the run's own folder in
    # its place every path derived from it resolves to a string the caller can recognise.
    if isinstance(cfg.get("paths"), DictConfig):
        cfg.paths.output_dir = str(run_dir)
    written: dict = {}
    return flatten(cfg, written=written), written


def read_choices(run_dir: Path, config: dict, overrides: list[str]) -> dict:
    """Config group options (loss: l1): Hydra's record in hydra.yaml, else `group=option`
    overrides whose group is a top-level node of the config."""
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.is_file():
        choices = (yaml.safe_load(hydra_yaml.read_text()) or {}).get("hydra", {}).get("runtime", {}).get("choices")
        if isinstance(choices, dict):
            return {k: v for k, v in choices.items() if "/" not in k and k != "hydra"}
    top = {key.split(".")[0] for key in config if "." in key}
    pairs = (o.split("=", 1) for o in overrides if "=" in o)
    return {k: v for k, v in pairs if k in top}


def read_history(run_dir: Path, key: str = "val/psnr_y") -> list[tuple[int, float]]:
    """The val curve from `val_history.csv` (ValHistory), else from the CSV logger's file."""
    logger_files = [run_dir / "csv" / "metrics.csv", *sorted(run_dir.glob("csv/*/metrics.csv"))]
    candidates = [run_dir / "val_history.csv", *logger_files]
    for path in candidates:
        if not path.is_file():
            continue
        points: dict[int, float] = {}
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                try:  # the CSV logger repeats a step for the final validation: first one wins
                    points.setdefault(int(float(row["step"])), float(row[key]))
                except (KeyError, TypeError, ValueError):
                    continue
        if points:
            return sorted(points.items())
    return []


def run_status(run_dir: Path, metrics: dict | None) -> str:
    if metrics is not None:
        return "ok"
    for log in run_dir.glob("*.log"):  # train.log: srlab.cli.entry writes why a run stopped there
        text = log.read_text(errors="replace")
        if "error:" in text or "Traceback" in text:
            return "failed"
    return "unfinished"


def load_run(run_dir: Path) -> Run:
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):  # absent, or cut short by a crash while writing
        metrics = None
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    overrides = [str(o) for o in overrides or []]
    config, written = read_config(run_dir)
    return Run(dir=run_dir, config=config, written=written, choices=read_choices(run_dir, config, overrides),
               overrides=overrides, metrics=metrics, status=run_status(run_dir, metrics), history=read_history(run_dir))


def name_runs(runs: list[Run]) -> None:
    """Name = the overrides that are not the same in every run (`loss=l1,scale=2`): the
    shared ones (tiny-run settings, logger=csv) would repeat on every row. Else the dir name."""
    common = set.intersection(*(set(r.overrides) for r in runs)) if len(runs) > 1 else set()
    for run in runs:
        own = [o for o in run.overrides if o not in common]
        # multirun jobs are called 0, 1, ...: with their sweep's name they stay apart
        fallback = f"{run.dir.parent.name}/{run.dir.name}" if run.dir.name.isdigit() else run.dir.name
        run.name = ",".join(own) or fallback
    # the same overrides in two sweeps: say which sweep
    repeated = {n for n, count in Counter(r.name for r in runs).items() if count > 1}
    for run in runs:
        if run.name in repeated and run.name != f"{run.dir.parent.name}/{run.dir.name}":
            run.name = f"{run.name} ({run.dir.parent.name}/{run.dir.name})"
