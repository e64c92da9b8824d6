#!/usr/bin/env bash
# Same U-Net, same steps, same seed, one run per loss config (one Hydra multirun), then
# srlab-compare: a table sorted by val PSNR_Y, comparison.md/.csv and val_psnr_y.png.
#   scripts/compare_losses.sh [extra overrides...]   e.g. trainer.max_steps=400
# Everything lands in outputs/compare_losses/<date>_<time>/ (jobs 0..4 and the comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
root=outputs/compare_losses/$(date +%Y-%m-%d_%H-%M-%S)
status=0
.venv/bin/srlab-train -m experiment=unet loss=mse,l1,ssim,hfen,mse_ssim logger=csv \
  hydra.sweep.dir="$root" "$@" || status=$?
# A job that fails with a user error ends the sweep; the runs made so far still get the table.
if [ -d "$root" ]; then .venv/bin/srlab-compare "$root"; fi
exit "$status"
