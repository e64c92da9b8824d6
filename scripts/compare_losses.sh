#!/usr/bin/env bash
# Same U-Net, same steps, same seed, one run per loss config; prints val PSNR_Y / SSIM_Y of each.
#   scripts/compare_losses.sh [extra overrides...]   e.g. trainer.max_steps=400
set -euo pipefail
cd "$(dirname "$0")/.."
root=outputs/compare_losses/$(date +%Y-%m-%d_%H-%M-%S)
mkdir -p "$root"
for loss in mse l1 ssim hfen mse_ssim; do
  .venv/bin/srlab-train experiment=unet loss=$loss logger=csv callbacks.progress_bar=null \
    hydra.run.dir="$root/$loss" "$@" > "$root/$loss.log" 2>&1 || { echo "$loss failed: see $root/$loss.log"; continue; }
done
.venv/bin/python - "$root" <<'PY'
import json, sys, pathlib
root = pathlib.Path(sys.argv[1])
print(f"| loss | val PSNR_Y | val SSIM_Y | bicubic PSNR_Y | gain dB | steps | s |\n|---|---|---|---|---|---|---|")
for d in sorted(p for p in root.iterdir() if (p / "metrics.json").exists()):  # noqa: E501
    m = json.loads((d / "metrics.json").read_text())
    print(f"| {d.name} | {m['val/psnr_y']:.3f} | {m['val/ssim_y']:.4f} | {m['val/bicubic_psnr_y']:.3f} | "
          f"{m['val/psnr_y'] - m['val/bicubic_psnr_y']:+.3f} | {m['train/steps']} | {m['train/seconds']:.0f} |")
PY
