"""Model files the rest of the field opens: a bare state dict that spandrel (and so chaiNNer,
traiNNer-redux and most upscaling front-ends) detects as the same architecture and scale.

Which nets have one: every `SpandrelNet` (its `model.*` weights are spandrel's class's own)
and srlab's RRDBNet (its keys are ESRGAN's). Others (EDSR, U-Net, auto-encoder, CVAE, srlab's
SwinIR and RCAN, whose key names differ from the authors') get one line naming the formats
that work for them. Every file is checked before it is kept: spandrel must load it and give
srlab's output within 1e-5 on a random image. Persistent buffers that are constants of the
hyper-parameters (attention masks, relative position indices) are left out, kind by kind,
where spandrel still loads the file without them and gives the same output.
"""
from __future__ import annotations

import torch
from torch import nn

from srlab.errors import SrlabError

TOLERANCE = 1e-5
STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def bare_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict spandrel expects for `net`, or one line saying there is none."""
    from srlab.nets.rrdbnet import RRDBNet
    from srlab.nets.spandrel_arch import SpandrelNet

    if isinstance(net, SpandrelNet):
        state = net.model.state_dict()
    elif isinstance(net, RRDBNet):
        state = net.state_dict()
    else:
        raise SrlabError(f"{type(net).__name__} has no spandrel counterpart, so no tool but srlab would open a "
                         "bare state dict of it: export it with format=srlab (.srlab.pt) or format=onnx")
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


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
    with torch.no_grad():
        ours = net.eval()(x.clone())
        theirs = descriptor.model.eval()(x.clone())
    theirs = theirs[0] if isinstance(theirs, (tuple, list)) else theirs
    diff = (ours - theirs).abs().max().item() if ours.shape == theirs.shape else float("inf")
    if diff > TOLERANCE:
        raise SrlabError(f"spandrel's {descriptor.architecture.name} differs from srlab's net on the exported "
                         f"weights (max abs difference {diff:.3g} > {TOLERANCE})")
    return descriptor


def interchange_state_dict(net: nn.Module, scale: int) -> tuple[dict, object, list[str]]:
    """(state dict to write, spandrel's descriptor of it, buffers left out).

    Constant buffers are tried away one kind at a time (every `attn_mask`, every
    `relative_position_index`, ...): a kind stays out only if spandrel still loads the file
    and gives the same output, since spandrel reads some hyper-parameters off their shapes."""
    state = bare_state_dict(net)
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
