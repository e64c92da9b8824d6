"""Config plumbing shared by the entry points: where configs live, resolvers, early checks.

Checks here run before any data is read or model is built, so a bad value costs the user
one line and no time. Hydra itself reports unknown groups/options with its list of choices.
"""
import netrc
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import srlab.runs.names  # noqa: F401  (registers ${srlab.run_name:} and ${srlab.run_group:})
from srlab.errors import SrlabError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"  # the repository's configs/
VALID_SCALES = (2, 3, 4, 8)


def wandb_offline() -> bool:
    """Offline unless W&B credentials exist (WANDB_API_KEY or a `wandb login` netrc entry)."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return False
    try:
        rc = netrc.netrc(os.environ.get("NETRC"))
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1]
        return rc.authenticators(host) is None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return True


if not OmegaConf.has_resolver("srlab.wandb_offline"):
    OmegaConf.register_new_resolver("srlab.wandb_offline", wandb_offline)
# ${srlab.floordiv:${trainer.max_steps},2}: integer arithmetic in configs (the GAN's scheduler horizon)
if not OmegaConf.has_resolver("srlab.floordiv"):
    OmegaConf.register_new_resolver("srlab.floordiv", lambda a, b: int(a) // int(b))


def compose_config(config_name: str, overrides: list[str], run_dir: Path) -> DictConfig:
    """Compose a config outside `@hydra.main` (tests, `make bench`) as the CLI would, with the
    Hydra runtime set so ${hydra:...} resolves to `run_dir`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name, overrides=list(overrides) + [f"hydra.run.dir={run_dir}"],
                      return_hydra_config=True)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.name = config_name
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):  # the task function never sees the hydra node
        del cfg["hydra"]
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return cfg


def check_scale(scale) -> int:
    if scale not in VALID_SCALES:
        raise SrlabError(f"scale={scale} is not supported: use one of {', '.join(map(str, VALID_SCALES))}")
    return int(scale)


def check_resume_checkpoint(path) -> None:
    """ckpt_path must be a whole srlab checkpoint, read as data: a missing, truncated, foreign
    or code-carrying file (a pickle payload, TorchScript, a zip bomb: srlab/ops/untrusted_files.py),
    or one whose weights are NaN, is caught here in one line, before anything is built, instead
    of as a traceback after setup (Lightning then reads it with weights_only=True)."""
    from srlab.ops.untrusted_files import read_model_file
    from srlab.ops.weight_checks import check_weights

    file = Path(str(path)).expanduser()
    if not file.exists() and not file.is_symlink():
        raise SrlabError(f"ckpt_path={path} does not exist: pass a checkpoint of a run, e.g. "
                         "outputs/train/runs/<run>/checkpoints/last.ckpt")
    try:
        obj = read_model_file(file, what="ckpt_path")
    except SrlabError as e:
        raise SrlabError(f"ckpt_path={path} is not a readable checkpoint: {e}; resume from another one, "
                         "e.g. the run's best.ckpt") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict) or "loops" not in obj:
        raise SrlabError(f"ckpt_path={path} is not a training checkpoint of srlab-train (no state_dict and loop "
                         "state): resume from a run's last.ckpt; to start from weights use approach.init_from")
    check_weights({k: v for k, v in obj["state_dict"].items() if isinstance(k, str)}, set(), f"ckpt_path={path}")


def validate_train_config(cfg: DictConfig) -> None:
    """Fail fast, in one line, on values that would only break deep inside training: types,
    unknown keys and ranges (srlab/config/schema.py), the resume checkpoint, scale and patch size."""
    from srlab.config.schema import check_config

    if cfg.get("ckpt_path"):
        check_resume_checkpoint(cfg.ckpt_path)
    scale = check_scale(cfg.get("scale"))
    check_config(cfg)
    patch = cfg.data.get("patch_size") if "data" in cfg else None
    if patch is not None and (patch <= 0 or patch % scale != 0):
        raise SrlabError(
            f"data.patch_size={patch} is not a positive multiple of scale={scale}: "
            f"use e.g. data.patch_size={max(scale, round(patch / scale) * scale)}"
        )
    batch = cfg.data.get("batch_size") if "data" in cfg else None
    if batch is not None and batch < 1:
        raise SrlabError(f"data.batch_size={batch} must be at least 1")
