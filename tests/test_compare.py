"""srlab-compare reads run directories only: hand-made ones (no training) for the table's rules,
and one real 2-job multirun for the whole path (ValHistory curve -> table and plot)."""
import csv
import json
import logging
import subprocess
import sys
import time

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from srlab.cli.compare import compare
from srlab.cli.entry import user_errors
from srlab.errors import SrlabError
from srlab.training.callbacks import ValHistory
from tests.conftest import FAST, compose_cfg, write_images

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(root, name, overrides, metrics=None, history=(), log=None):
    """A run directory as srlab-train leaves it: Hydra's .hydra/, metrics.json, val_history.csv."""
    run_dir = root / name
    cfg = compose_cfg("train", FAST + overrides, run_dir)
    # as Hydra writes it: unresolved, paths.output_dir = ${hydra:runtime.output_dir}
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if history:
        rows = ["step,val/bicubic_psnr_y,val/psnr_y,val/ssim_y"] + [f"{s},24.0,{p},0.7" for s, p in history]
        (run_dir / "val_history.csv").write_text("\n".join(rows) + "\n")
    (run_dir / "train.log").write_text(log or "[INFO] - Trainer started\n")
    return run_dir


def metrics(psnr, ssim):
    return {"val/psnr_y": psnr, "val/ssim_y": ssim, "val/bicubic_psnr_y": 24.0, "train/steps": 20,
            "train/seconds": 3.2}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("multirun")
    make_run(root, "0", ["loss=mse", "scale=4"], metrics(25.0, 0.80), [(10, 24.5), (20, 25.0)])
    make_run(root, "1", ["loss=l1", "scale=2"], metrics(27.0, 0.70), [(10, 26.0), (20, 27.0)])
    make_run(root, "2", ["loss=l1", "scale=4"], log="error: data.train_dir=/x does not exist\n")
    make_run(root, "3", ["loss=mse", "scale=2"], history=[(10, 24.8)])  # still running, or killed
    return root


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_table_has_the_differing_keys_best_run_first(sweep, tmp_path):
    runs, header, out = compare([sweep], out=tmp_path / "cmp")
    assert header[:4] == ["name", "status", "loss", "scale"]  # not paths, not loss.terms.*
    assert not any(h.startswith(("paths.", "callbacks.", "loss.")) for h in header)
    rows = read_csv(out / "comparison.csv")
    assert [r["name"] for r in rows] == ["loss=l1,scale=2", "loss=mse,scale=4", "loss=l1,scale=4", "loss=mse,scale=2"]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "unfinished"]
    assert [(r["loss"], r["scale"]) for r in rows[:2]] == [("l1", "2"), ("mse", "4")]
    assert float(rows[0]["gain_psnr_y"]) == pytest.approx(3.0) and rows[2]["val/psnr_y"] == ""
    md = (out / "comparison.md").read_text().splitlines()
    assert md[0].startswith("| name | status | loss | scale | PSNR_Y") and len(md) == 2 + 4
    assert "| loss=l1,scale=2 | ok | l1 | 2 | 27.000 | 0.7000 | +3.000 |" in md[2]


def test_metric_option_changes_the_order(sweep, tmp_path):
    runs, _, _ = compare([sweep], out=tmp_path, metric="val/ssim_y")
    assert [r.name for r in runs][:2] == ["loss=mse,scale=4", "loss=l1,scale=2"]
    with pytest.raises(SrlabError, match="no run has 'val/psnr' in metrics.json: use one of"):
        compare([sweep], out=tmp_path, metric="val/psnr")


def test_plot_has_one_curve_per_run_with_history(sweep, tmp_path):
    runs, _, out = compare([sweep / "0", sweep / "1", sweep / "3"], out=tmp_path)
    png = (out / "val_psnr_y.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert {r.name: len(r.history) for r in runs} == {"loss=l1,scale=2": 2, "loss=mse,scale=4": 2,
                                                       "loss=mse,scale=2": 1}


def test_default_out_is_the_sweep_folder(sweep, capsys):
    compare([sweep])
    assert (sweep / "comparison.md").is_file() and (sweep / "val_psnr_y.png").is_file()
    assert "loss=l1,scale=2" in capsys.readouterr().out


def test_no_runs_is_one_line_error(tmp_path):
    with pytest.raises(SrlabError, match="no training runs"):
        compare([tmp_path])
    res = subprocess.run([sys.executable, "-m", "srlab.cli.compare", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error:"), res.stderr


class FakeTrainer:
    sanity_checking, is_global_zero, global_step = False, True, 0

    def __init__(self):
        self.state = type("State", (), {"fn": "fit"})()
        self.callback_metrics = {}


def test_val_history_keeps_new_keys_and_skips_sanity_checks(tmp_path):
    history, trainer = ValHistory(str(tmp_path / "val_history.csv")), FakeTrainer()
    for step, extra, sanity in ((0, {}, True), (2, {}, False), (4, {"val/new": 1.0}, False)):
        trainer.sanity_checking, trainer.global_step = sanity, step
        trainer.callback_metrics = {"val/psnr_y": torch.tensor(20.0 + step), "train/loss": torch.tensor(1.0), **extra}
        history.on_validation_end(trainer, None)
    rows = read_csv(tmp_path / "val_history.csv")
    assert [(r["step"], r["val/psnr_y"], r["val/new"]) for r in rows] == [("2", "22.0", ""), ("4", "24.0", "1.0")]


@pytest.mark.slow  # a CLI start: 10-12 s of make test's 6 minutes
def test_a_user_error_is_kept_in_the_run_log(tmp_path):
    """The CLI prints the error line to the terminal; the run's log gets it too: status failed.
    (A bad config value stops before the run exists and leaves no directory: test_schema.py.)"""
    tiny = tmp_path / "tiny"
    write_images(tiny, 2, size=(16, 16))  # smaller than the 128 px patch: found only at setup
    res = subprocess.run([sys.executable, "-m", "srlab.cli.train", "data=folder", f"data.train_dir={tiny}",
                          "logger=none", f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("error: none of the ") and "training image(s) is usable" in line, res.stderr
    assert line in (tmp_path / "run" / "train.log").read_text()
    runs, _, _ = compare([tmp_path / "run"], out=tmp_path / "cmp")
    assert runs[0].status == "failed"


def test_a_crash_leaves_its_traceback_in_the_log_file(tmp_path):
    handler = logging.FileHandler(tmp_path / "train.log")
    logging.getLogger().addHandler(handler)
    try:
        with pytest.raises(RuntimeError), user_errors():
            raise RuntimeError("boom")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (tmp_path / "train.log").read_text()
    assert "Traceback" in text and "RuntimeError: boom" in text


@pytest.mark.slow  # 10-21 s of subprocesses: make test-full (make test stays under 6 min)
def test_multirun_then_compare(tmp_path, capsys):
    """The real path: a 2-job Hydra multirun of tiny trainings, then srlab-compare on its folder."""
    write_images(tmp_path / "hr", 4, size=(64, 64))
    out = tmp_path / "sweep"
    fast = [o for o in FAST if not o.startswith("logger=")]
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "srlab.cli.train", "-m", "loss=mse,l1", *fast, "data=folder",
                          f"data.train_dir={tmp_path / 'hr'}", "trainer.max_steps=4", "trainer.val_check_interval=2",
                          "logger=csv", "callbacks.progress_bar=null", f"hydra.sweep.dir={out}"],
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    print(f"multirun: {time.perf_counter() - start:.0f} s")
    runs, header, _ = compare([out])
    print(capsys.readouterr().out, file=sys.stderr)  # the table, in the -s / failure output
    assert [r.status for r in runs] == ["ok", "ok"] and {r.name for r in runs} == {"loss=mse", "loss=l1"}
    assert header[2] == "loss" and "scale" not in header
    for run in runs:
        assert [step for step, _ in run.history] == [2, 4]  # from val_history.csv, one row per validation
        rows = read_csv(run.dir / "val_history.csv")
        assert len(rows) == 2 and {"step", "val/psnr_y", "val/ssim_y", "val/bicubic_psnr_y"} <= set(rows[0])
    assert (out / "val_psnr_y.png").read_bytes().startswith(PNG_MAGIC)
