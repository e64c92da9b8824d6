#!/usr/bin/env bash
# One training run (1..N nodes, DDP) as a plain batch job: sbatch returns at once and nothing
# waits on a login node. For a sweep of many runs use the launcher: srlab-train -m hydra/launcher=slurm ...
# (configs/hydra/launcher/slurm.yaml). One task per GPU; Lightning reads the SLURM environment.
#   sbatch scripts/slurm_train.sh experiment=unet data=folder data.train_dir=/data/DIV2K/train
#SBATCH --job-name=srlab
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
# Pre-emption / time limit: SIGUSR1 90 s before the end; Lightning saves hpc_ckpt_<n>.ckpt in the
# run directory and requeues this job, which (same job id, same run directory) resumes from it.
#SBATCH --signal=SIGUSR1@90
#SBATCH --requeue
set -euo pipefail
cd "$(dirname "$0")/.."
# One run directory for all ranks (each srun task would otherwise stamp its own ${now:...}).
srun .venv/bin/srlab-train trainer=multinode 'hydra.run.dir=${paths.log_dir}/${task_name}/runs/slurm_'"$SLURM_JOB_ID" "$@"
