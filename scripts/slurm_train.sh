#!/usr/bin/env bash
# Multi-node training under SLURM: one task per GPU; Lightning reads the SLURM environment.
#   sbatch scripts/slurm_train.sh experiment=unet data=folder data.train_dir=/data/DIV2K/train
#SBATCH --job-name=srlab
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
set -euo pipefail
cd "$(dirname "$0")/.."
srun .venv/bin/srlab-train trainer=multinode "$@"
