"""Measures by name: the one list validation (`val.metrics`) and srlab-eval (`eval.metrics`) read.

`configs/measures/default.yaml` defines each name with its `_target_` (one line per measure);
`build_measures` makes the listed ones. A measure whose backbone file is missing stops the
run with one line, unless the user listed it as optional (`val.optional=[lpips]`), in which
case one warning says it is left out and the run goes on without it. `direction` answers
"is higher better?" for any logged key (`val/bicubic_lpips`, `gain_psnr_y`), which is what
`best.ckpt`'s mode, srlab-compare's sort and its plots need. `MeasureMeans` accumulates
per-image values as sums (DDP-exact, NaN skipped: NIQE of an image too small to score).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import torch
from hydra.utils import get_class
from torchmetrics import Metric

from srlab.errors import SrlabError
from srlab.evaluation.measure import Measure

log = logging.getLogger(__name__)
PREFIXES = ("bicubic_", "sample_", "mean_", "gain_", "posterior_")
LOWER_IS_BETTER_WORDS = ("loss", "kl")


def build_measures(names: Iterable[str], definitions: Mapping, optional: Iterable[str] = (),
                   what: str = "val.metrics") -> dict[str, Measure]:
    """{name: measure} for the listed names, in order; optional ones that cannot load are left out."""
    names, optional = list(names or []), set(optional or [])
    unknown = [n for n in names if n not in definitions]
    if unknown:
        raise SrlabError(f"{what}: {', '.join(map(str, unknown))} is not a measure: use {', '.join(definitions)} "
                         "(defined in configs/measures/default.yaml)")
    if len(set(names)) != len(names):
        raise SrlabError(f"{what}={names} names a measure twice")
    built = {}
    for name in names:
        node = dict(definitions[name])
        target = node.pop("_target_", None)
        if not target:
            raise SrlabError(f"measures.{name} has no _target_")
        try:
            measure = get_class(target)(**node)
        except SrlabError as err:
            if name not in optional:
                raise
            log.warning("%s: %s left out (it is optional): %s", what, name, err)
            continue
        if not isinstance(measure, Measure):
            raise SrlabError(f"measures.{name}: {target} is not a srlab.evaluation.measure.Measure")
        measure.name = name
        built[name] = measure.eval()
    return built


def base_key(key: str) -> str:
    """`val/bicubic_lpips` -> `lpips`: the measure's own key, without stage and prefixes."""
    key = key.split("/")[-1]
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def direction(key: str, measures: Mapping[str, Measure] | Iterable[Measure]) -> str | None:
    """"max" or "min" for a logged key, or None when no measure reports it and its name does
    not tell (a loss, a KL: min)."""
    items = measures.values() if isinstance(measures, Mapping) else measures
    own = base_key(key)
    for measure in items:
        if own in measure.reports():
            return "max" if measure.higher_is_better else "min"
    if any(word in key.split("/") or key.endswith(f"_{word}") for word in LOWER_IS_BETTER_WORDS):
        return "min"
    return None


class MeasureMeans(Metric):
    """Mean per image of every key the measures report (sum and count states: DDP-exact)."""

    full_state_update = False

    def __init__(self, keys: Iterable[str]):
        super().__init__()
        self.names = list(dict.fromkeys(keys))
        for name in self.names:
            self.add_state(f"sum_{name}", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"n_{name}", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, values: Mapping[str, torch.Tensor]) -> None:
        for name, v in values.items():
            if name not in self.names:
                continue
            v = v.detach().double().reshape(-1)
            ok = ~v.isnan()
            setattr(self, f"sum_{name}", getattr(self, f"sum_{name}") + v[ok].sum())
            setattr(self, f"n_{name}", getattr(self, f"n_{name}") + ok.sum())

    def compute(self) -> dict[str, torch.Tensor]:
        # a key no image could be measured by (NIQE of tiny images) is NaN: logged, never best
        return {name: (getattr(self, f"sum_{name}") / getattr(self, f"n_{name}")).float() for name in self.names}


def measure_all(measures: Mapping[str, Measure], sr: torch.Tensor, hr: torch.Tensor | None, border: int,
                gray: torch.Tensor | None = None, reference: bool | None = None) -> dict[str, torch.Tensor]:
    """{key: per-image values [N]} of every measure (`reference`: only those that need HR
    (True), only no-reference ones (False), or all; without `hr`, no-reference ones only)."""
    out: dict[str, torch.Tensor] = {}
    for m in measures.values():
        if (hr is None and m.needs_hr) or (reference is not None and m.needs_hr != reference):
            continue
        out.update(m(sr, hr, border, gray))
    return out


def measure_configs(cfg, group: str) -> tuple[list[str], list[str], dict]:
    """(names, optional names, definitions) of `<group>.metrics` / `<group>.optional` and `measures`."""
    from omegaconf import OmegaConf

    node = cfg.get(group) or {}
    names = list(node.get("metrics") or ["psnr", "ssim"])
    optional = list(node.get("optional") or [])
    definitions = cfg.get("measures") or {}
    if not isinstance(definitions, dict):
        definitions = OmegaConf.to_container(definitions, resolve=True)
    return [str(n) for n in names], [str(n) for n in optional], definitions


def reported_keys(measures: Mapping[str, Measure]) -> list[str]:
    """Every key the measures report, in list order (`psnr` -> psnr_y, psnr_rgb)."""
    return [k for m in measures.values() for k in m.reports()]


# what validation measures for a module built without srlab-train's config (tests, scripts)
DEFAULT_DEFINITIONS = {"psnr": {"_target_": "srlab.evaluation.psnr.PSNR"},
                       "ssim": {"_target_": "srlab.evaluation.ssim.SSIM"}}
