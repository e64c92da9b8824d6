"""srlab-compare: one table and one plot of many training runs, from their run directories.

    srlab-compare outputs/train/multiruns/<date>_<time>            # a sweep
    srlab-compare outputs/ --metric val/ssim_y                     # every run below a folder
    srlab-compare <run> <run> --out cmp/                           # chosen runs

A table needs only what tells runs apart: the config values that differ between them (a
group option such as `loss` stands for all the keys it sets), then the final metrics. It is
printed, and written as comparison.md / comparison.csv; val_psnr_y.png has the val curves.
Only run directories are read (see srlab/runs/directories.py), so it works offline, whatever the logger.
"""
from __future__ import annotations

import argparse
import csv
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from rich.console import Console
from rich.table import Table

from srlab.cli.entry import user_errors
from srlab.errors import SrlabError
from srlab.runs.directories import Run, find_run_dirs, is_run_dir, load_run, name_runs

# key -> (label in the printed and Markdown tables, format); the CSV keeps the keys.
# gain_psnr_y = val/psnr_y - val/bicubic_psnr_y: what the net adds over plain upscaling.
METRIC_COLUMNS = {"val/psnr_y": ("PSNR_Y", "{:.3f}"), "val/ssim_y": ("SSIM_Y", "{:.4f}"),
                  "gain_psnr_y": ("gain dB", "{:+.3f}"), "train/steps": ("steps", "{:.0f}"),
                  "train/seconds": ("seconds", "{:.1f}")}
STATUS_ORDER = {"ok": 0, "failed": 1, "unfinished": 2}
STATUS_STYLE = {"ok": "green", "failed": "red", "unfinished": "yellow"}


def show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return str(value).replace("'", "").replace(" ", "")
    return str(value)


def ignored(key: str, value, run: Run) -> bool:
    """Keys that differ for every run whatever was changed: where its files go, Hydra's own."""
    if key.split(".")[0] in ("paths", "hydra") or "output_dir" in key:
        return True
    return isinstance(value, str) and (str(run.dir) in value or "${hydra:" in value or "${now:" in value)


def differing_columns(runs: list[Run]) -> tuple[list[str], list[str]]:
    """(config groups, dotted keys) whose values are not the same in every run.
    Keys under a group whose option differs are left out: `loss=l1` vs `loss=mse` would
    otherwise add a column per term and term parameter, all saying the same thing. A key
    that is an interpolation is compared as written: `approach.scale: ${scale}` is no column
    of its own (`scale` is one), unless a run set it to a value."""
    missing = "—"
    groups = [g for g in dict.fromkeys(g for r in runs for g in r.choices)
              if len({show(r.choices.get(g, missing)) for r in runs}) > 1]
    hidden = {g for g in groups if any(k.startswith(f"{g}.") for r in runs for k in r.config)}
    skip = {k for r in runs for k, v in r.config.items() if ignored(k, v, r)}
    keys = []
    for key in dict.fromkeys(k for r in runs for k in r.config):  # config order, first run first
        if key in skip or key.split(".")[0] in hidden:
            continue
        if len({r.written.get(key) or show(r.config.get(key, missing)) for r in runs}) > 1:
            keys.append(key)
    return groups, keys


def metric_values(run: Run) -> dict:
    m = dict(run.metrics or {})
    if "val/psnr_y" in m and "val/bicubic_psnr_y" in m:
        m["gain_psnr_y"] = m["val/psnr_y"] - m["val/bicubic_psnr_y"]
    return m


def sort_metric(runs: list[Run], metric: str | None) -> str:
    """--metric, else the runs' own `optimized_metric` (the most common one), else val/psnr_y."""
    if metric:
        return metric
    chosen = Counter(r.config["optimized_metric"] for r in runs if isinstance(r.config.get("optimized_metric"), str))
    return chosen.most_common(1)[0][0] if chosen else "val/psnr_y"


def sort_runs(runs: list[Run], metric: str) -> list[Run]:
    """ok runs best first, then failed, then unfinished. Best is highest (PSNR, SSIM, like the
    checkpoint monitor and the Optuna search), lowest for a loss."""
    sign = 1 if "loss" in metric else -1

    def key(run: Run):
        value = metric_values(run).get(metric)
        has = isinstance(value, (int, float))
        return STATUS_ORDER[run.status], not has, sign * value if has else 0.0

    return sorted(runs, key=key)


class Rows(NamedTuple):
    header: list[str]  # keys: the CSV's header
    labels: list[str]  # short names for the printed and Markdown tables
    shown: list[list[str]]  # formatted cells
    raw: list[list]  # full-precision cells for the CSV
    n_metrics: int  # the last columns are metrics (right-aligned)


def table(runs: list[Run], metric: str) -> Rows:
    groups, keys = differing_columns(runs)
    metric_cols = list(METRIC_COLUMNS) + ([metric] if metric not in METRIC_COLUMNS else [])
    header = ["name", "status", *groups, *keys, *metric_cols]
    labels = header[:-len(metric_cols)] + [METRIC_COLUMNS.get(c, (c, ""))[0] for c in metric_cols]
    shown, raw = [], []
    for run in runs:
        values = [run.choices.get(g, "—") for g in groups] + [run.config.get(k, "—") for k in keys]
        m = metric_values(run)
        numbers = [m.get(c) for c in metric_cols]
        text = [METRIC_COLUMNS.get(c, ("", "{:.4g}"))[1].format(v) if isinstance(v, (int, float)) else "" for c, v in
                zip(metric_cols, numbers)]
        shown.append([run.name, run.status, *map(show, values), *text])
        raw.append([run.name, run.status, *map(show, values), *["" if v is None else v for v in numbers]])
    return Rows(header, labels, shown, raw, len(metric_cols))


def write_markdown(path: Path, rows: Rows) -> None:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    first_metric = len(rows.labels) - rows.n_metrics
    rule = "|" + "|".join("---" if i < first_metric else "---:" for i in range(len(rows.labels))) + "|"
    path.write_text("\n".join([line(rows.labels), rule] + [line(r) for r in rows.shown]) + "\n")


def write_csv(path: Path, rows: Rows, runs: list[Run]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(rows.header + ["run_dir"])
        writer.writerows(row + [str(run.dir)] for row, run in zip(rows.raw, runs))


def plot_curves(path: Path, runs: list[Run]) -> int:
    """val PSNR_Y against step, one line per run that has a curve; returns how many."""
    curves = [r for r in runs if r.history]
    if not curves:
        return 0
    import matplotlib  # imported here: the table alone should not wait for it

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(8, 5))
    for run in curves:
        steps, values = zip(*run.history)
        # failed and unfinished runs dashed: their curve stops early for a reason
        ax.plot(steps, values, "-" if run.status == "ok" else "--", marker="o" if len(steps) <= 30 else None,
                markersize=3, label=run.name)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # steps are whole
    ax.set_xlabel("step")
    ax.set_ylabel("val PSNR_Y (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return len(curves)


def default_out(paths: list[Path]) -> Path:
    if len(paths) == 1 and not is_run_dir(paths[0]):
        return paths[0]  # a sweep or a folder: the comparison lives beside its runs
    return Path("outputs/compare") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def compare(paths: list[Path], out: Path | None = None, metric: str | None = None,
            console: Console | None = None) -> tuple[list[Run], list[str], Path]:
    """Find, load, sort and tabulate the runs; write the files. Returns (runs, header, out)."""
    paths = [Path(p) for p in paths]
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        raise SrlabError(f"no training runs (folders with .hydra/config.yaml) in {', '.join(map(str, paths))}")
    runs = [load_run(d) for d in run_dirs]
    name_runs(runs)
    metric = sort_metric(runs, metric)
    finished = [r for r in runs if r.metrics]
    if finished and not any(metric in metric_values(r) for r in finished):
        keys = sorted({k for r in finished for k in metric_values(r)})
        raise SrlabError(f"no run has {metric!r} in metrics.json: use one of {', '.join(keys)}")
    runs = sort_runs(runs, metric)
    rows = table(runs, metric)

    out = Path(out) if out else default_out(paths)
    out.mkdir(parents=True, exist_ok=True)
    write_markdown(out / "comparison.md", rows)
    write_csv(out / "comparison.csv", rows, runs)
    n_curves = plot_curves(out / "val_psnr_y.png", runs)

    console = console or Console()
    rich_table = Table(title=f"{len(runs)} runs, best {metric} first")
    first_metric = len(rows.labels) - rows.n_metrics
    for i, column in enumerate(rows.labels):
        rich_table.add_column(column, justify="left" if i < first_metric else "right")
    for run, row in zip(runs, rows.shown):
        rich_table.add_row(row[0], f"[{STATUS_STYLE[run.status]}]{row[1]}[/]", *row[2:])
    if not console.is_terminal:  # a log or a pipe: whole rows beat wrapping at 80 columns
        wide = console.options.update_width(1000)
        console.width = max(console.width, console.measure(rich_table, options=wide).maximum)
    console.print(rich_table)
    plot = "val_psnr_y.png, " if n_curves else ""
    console.print(f"wrote {plot}comparison.md, comparison.csv in {out}"
                  + ("" if n_curves else " (no run has a val curve to plot)"), soft_wrap=True)
    return runs, rows.header, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="srlab-compare", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="a run directory, a multirun directory, or a folder searched for runs")
    parser.add_argument("--out", type=Path, help="where comparison.md/.csv and val_psnr_y.png go "
                        "(default: PATH when it is one sweep or folder, else outputs/compare/<date>_<time>)")
    parser.add_argument("--metric", help="sort by this key of metrics.json (default: the runs' optimized_metric)")
    args = parser.parse_args(argv)
    with user_errors():
        compare(args.paths, args.out, args.metric)


if __name__ == "__main__":
    main()
