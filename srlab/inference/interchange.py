"""Model files the rest of the field opens: a bare state dict that spandrel (and so chaiNNer,
traiNNer-redux and most upscaling front-ends) detects as the same architecture and scale.

Which nets have one: every `SpandrelNet` (its `model.*` weights are spandrel's class's own),
srlab's RRDBNet (its keys are ESRGAN's), and srlab's SwinIR and RCAN: their weights are put
into a template of spandrel's class under the authors' names, found by the very rules that
load the authors' files into srlab (`OFFICIAL_RULES`, run on the template's keys), with the
authors' constants (position indices, masks, RCAN's MeanShift) from the template and RCAN's
[0, 255] range unfolded. Others (EDSR, U-Net, auto-encoder, CVAE) get one line naming the
formats that work for them. Every file is checked before it is kept: spandrel must load it and give
srlab's output within 1e-5 on a random image. Persistent buffers that are constants of the
hyper-parameters (attention masks, relative position indices) are left out, kind by kind,
where spandrel still loads the file without them and gives the same output.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from srlab.errors import SrlabError

TOLERANCE = 1e-5
STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def bare_state_dict(net: nn.Module, net_config: dict | None = None) -> dict[str, torch.Tensor]:
    """The state dict spandrel expects for `net`, or one line saying there is none.
    `net_config` (the net's `_target_` config) gives srlab's SwinIR / RCAN hyper-parameters."""
    from srlab.nets.rcan import RCAN
    from srlab.nets.rrdbnet import RRDBNet
    from srlab.nets.spandrel_arch import SpandrelNet, import_spandrel
    from srlab.nets.swinir import SwinIR

    if isinstance(net, SpandrelNet):
        state = net.model.state_dict()
    elif isinstance(net, RRDBNet):
        state = net.state_dict()
    elif isinstance(net, (SwinIR, RCAN)) and net_config is not None:
        import_spandrel()
        state = (_swinir_template if isinstance(net, SwinIR) else _rcan_template)(net, net_config)
    else:
        raise SrlabError(f"{type(net).__name__} has no spandrel counterpart, so no tool but srlab would open a "
                         "bare state dict of it: export it with format=srlab (.srlab.pt) or format=onnx")
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def _config_values(net_config: dict, cls) -> dict:
    """A net config's values over its class's defaults (a config may leave defaults out)."""
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **{k: v for k, v in net_config.items() if not k.startswith("_")}}


def _via_template(net: nn.Module, template: nn.Module, rules, to_official=None) -> dict[str, torch.Tensor]:
    """srlab's weights under the authors' names: each of spandrel's template keys is renamed with
    the net's own loading rules (authors -> srlab); keys the rules drop are the authors'
    constants (attention masks, position indices, MeanShift), taken from the template."""
    from srlab.nets.official_weights import rename

    ours = net.state_dict()
    state = dict(template.state_dict())
    for srlab_key, official_key in rename({k: k for k in state}, rules).items():
        if srlab_key not in ours or ours[srlab_key].shape != state[official_key].shape:
            raise SrlabError(f"{type(net).__name__} with these options has no spandrel counterpart (spandrel's "
                             f"{official_key} has no equal in srlab's net): export it with format=srlab or format=onnx")
        state[official_key] = ours[srlab_key]
    if to_official is not None:
        to_official(state)
    return state


def _swinir_template(net: nn.Module, net_config: dict) -> dict[str, torch.Tensor]:
    from spandrel.architectures.SwinIR import SwinIR as Template

    from srlab.nets import swinir

    v = _config_values(net_config, swinir.SwinIR)
    template = Template(upscale=int(v["scale"]), in_chans=3, img_size=64, window_size=int(v["window"]),
                        img_range=1.0, embed_dim=int(v["embed_dim"]), depths=list(v["depths"]),
                        num_heads=list(v["heads"]), mlp_ratio=float(v["mlp_ratio"]), upsampler=v["upsampler"],
                        resi_connection="1conv")
    return _via_template(net, template, swinir.OFFICIAL_RULES)


def _rcan_template(net: nn.Module, net_config: dict) -> dict[str, torch.Tensor]:
    from spandrel.architectures.RCAN import RCAN as Template

    from srlab.nets import rcan

    v = _config_values(net_config, rcan.RCAN)
    template = Template(scale=int(v["scale"]), n_resgroups=int(v["n_groups"]), n_resblocks=int(v["n_blocks"]),
                        n_feats=int(v["channels"]), n_colors=3, rgb_range=255, reduction=int(v["reduction"]))

    def to_255(state: dict) -> None:  # the inverse of rcan._from_255: the authors' [0, 255] range
        state["head.0.weight"] = state["head.0.weight"] / 255.0
        state["tail.1.weight"] = state["tail.1.weight"] * 255.0
        state["tail.1.bias"] = state["tail.1.bias"] * 255.0

    return _via_template(net, template, rcan.OFFICIAL_RULES, to_255)


def constant_buffers(net: nn.Module) -> set[str]:
    """Persistent buffers that are not learned statistics: candidates to leave out."""
    inner = getattr(net, "model", net)
    return {name for name, _ in inner.named_buffers() if not name.endswith(STATISTICS)}


def check_with_spandrel(state_dict: dict, net: nn.Module, scale: int):
    """spandrel's descriptor of `state_dict`, after checking it is srlab's net: same scale,
    output within TOLERANCE on a random image of a size the net accepts."""
    from srlab.nets.spandrel_arch import import_spandrel

    spandrel = import_spandrel()
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(dict(state_dict))
    except Exception as e:  # noqa: BLE001
        raise SrlabError(f"spandrel does not load the exported state dict ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:120]})") from None
    if descriptor.scale != scale:
        raise SrlabError(f"spandrel reads the exported file as x{descriptor.scale}, not x{scale}")
    side = max(16, int(getattr(net, "minimum", 1)), int(descriptor.size_requirements.minimum))
    multiple = max(int(getattr(net, "multiple", 1)), int(descriptor.size_requirements.multiple_of))
    side = -(-side // multiple) * multiple
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.random.fork_rng():  # one noise draw for both (AuraSR injects noise)
        torch.manual_seed(0)
        ours = net.eval()(x.clone())
        torch.manual_seed(0)
        theirs = descriptor.model.eval()(x.clone())
    theirs = theirs[0] if isinstance(theirs, (tuple, list)) else theirs
    diff = (ours - theirs).abs().max().item() if ours.shape == theirs.shape else float("inf")
    if diff > TOLERANCE:
        raise SrlabError(f"spandrel's {descriptor.architecture.name} differs from srlab's net on the exported "
                         f"weights (max abs difference {diff:.3g} > {TOLERANCE})")
    return descriptor


def interchange_state_dict(net: nn.Module, scale: int, net_config: dict | None = None) -> tuple[dict, object, list[str]]:
    """(state dict to write, spandrel's descriptor of it, buffers left out).

    Constant buffers are tried away one kind at a time (every `attn_mask`, every
    `relative_position_index`, ...): a kind stays out only if spandrel still loads the file
    and gives the same output, since spandrel reads some hyper-parameters off their shapes."""
    state = bare_state_dict(net, net_config)
    descriptor = check_with_spandrel(state, net, scale)
    candidates = constant_buffers(net) & set(state)
    dropped: set[str] = set()
    for leaf in sorted({name.rsplit(".", 1)[-1] for name in candidates}):
        trial = dropped | {name for name in candidates if name.rsplit(".", 1)[-1] == leaf}
        try:
            descriptor = check_with_spandrel({k: v for k, v in state.items() if k not in trial}, net, scale)
        except SrlabError:
            continue  # spandrel needs this kind (it reads hyper-parameters off it): it stays
        dropped = trial
    return {k: v for k, v in state.items() if k not in dropped}, descriptor, sorted(dropped)
