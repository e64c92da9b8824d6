"""Print srlab-eval's bicubic PSNR_Y / SSIM_Y on Set5/Set14 (x2, x3, x4) next to the published numbers.

Why: the check that `srlab.ops.imresize` plus srlab-eval's metric conventions reproduce the
bicubic baseline every SR paper reports. It runs `srlab.cli.eval.evaluate` exactly as
`srlab-eval net=bicubic scale=S eval.channels=C eval.sets=[...]` does, for both pipelines:
y (the SRCNN/VDSR protocol the published rows come from; the default for net=bicubic) and
rgb (what RGB models are measured with). Run directories go to outputs/eval/bicubic_reference/.
Usage: .venv/bin/python scripts/bicubic_reference.py [path/to/benchmarks]   (needs Set5/HR, Set14/HR)
"""

import contextlib
import io
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict, read_write

from srlab.cli.eval import evaluate
from srlab.config.compose import CONFIG_DIR

# PSNR_Y / SSIM_Y of bicubic as tabulated by VDSR (Kim et al. 2016) and reused since.
PUBLISHED = {
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
}


def run_eval(root: Path, scale: int, channels: str) -> dict:
    run_dir = Path("outputs/eval/bicubic_reference") / f"x{scale}_{channels}"
    sets = ",".join(str(root / name / "HR") for name in ("Set5", "Set14"))
    overrides = ["net=bicubic", f"scale={scale}", f"eval.channels={channels}", f"eval.sets=[{sets}]",
                 f"hydra.run.dir={run_dir}"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("eval", overrides=overrides, return_hydra_config=True)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    with contextlib.redirect_stdout(io.StringIO()):  # srlab-eval's own table: not needed here
        return evaluate(cfg)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
    if not (root / "Set5" / "HR").is_dir():
        sys.exit(f"no Set5/HR under {root}; pass the benchmarks folder as the first argument")
    for channels in ("y", "rgb"):
        print(f"\neval.channels={channels}")
        print(f"{'set':6} {'scale':>5} {'PSNR_Y':>7} {'published':>9} {'diff':>7} {'SSIM_Y':>7} {'published':>9}")
        results = {s: run_eval(root, s, channels) for s in (2, 3, 4)}
        for (name, s), (psnr, ssim) in PUBLISHED.items():
            m = results[s]
            print(f"{name:6} {'x' + str(s):>5} {m[f'{name}/psnr_y']:7.3f} {psnr:9.2f} {m[f'{name}/psnr_y'] - psnr:+7.3f}"
                  f" {m[f'{name}/ssim_y']:7.4f} {ssim:9.4f}")


if __name__ == "__main__":
    main()
