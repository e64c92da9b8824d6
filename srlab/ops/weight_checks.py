"""What a model file declares, checked against what it holds, before memory is spent on it.

A model file names an architecture and its hyper-parameters (a config, or tensor shapes
spandrel reads them from); the net is allocated from those *before* any weight is copied in.
A 230 KB file can thus declare 2000 convolutions of 2048 channels (~150 GB), or hold tensors
that are one number expanded to billions (stride 0). Two checks keep that bounded:
- `held_bytes`: the bytes the file really holds (distinct storages), not what its tensors'
  shapes claim;
- `AllocationBudget`: a torch function mode that adds up every tensor the net's constructor
  creates (shape and dtype found on the meta device first, so nothing is allocated to learn
  them) and stops the build with one line once they pass a budget proportional to the file.
  Nets hold about what their file holds (plus buffers rebuilt from hyper-parameters), so a
  budget of 4x + 256 MiB refuses bombs within seconds and no real file.
`check_weights` then refuses weights that would run into silent garbage: NaN/Inf, or integer
and bool tensors where the net has floating-point parameters.
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from srlab.errors import SrlabError

BUDGET_FACTOR, BUDGET_SLACK = 4, 256 << 20
_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
              torch.randperm, torch.empty_strided, torch.arange, torch.linspace, torch.logspace, torch.eye,
              torch.tensor, torch.empty_like, torch.zeros_like, torch.ones_like, torch.full_like,
              torch.rand_like, torch.randn_like, torch.Tensor.new_empty, torch.Tensor.new_zeros,
              torch.Tensor.new_ones, torch.Tensor.new_full, torch.Tensor.new_tensor}


def held_bytes(state_dict: dict) -> int:
    """Bytes of the distinct storages behind the tensors of `state_dict` (nested dicts too)."""
    seen, total = set(), 0
    stack = [state_dict]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, torch.Tensor) and obj.device.type != "meta":
            storage = obj.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
    return total


class AllocationBudget(TorchFunctionMode):
    """`with AllocationBudget(limit, what): build()` -> one line once `build` asks for more."""

    def __init__(self, limit: int, what: str):
        super().__init__()
        self.limit, self.what, self.used = int(limit), what, 0

    @classmethod
    def for_file(cls, state_dict: dict, what: str) -> AllocationBudget:
        return cls(BUDGET_FACTOR * held_bytes(state_dict) + BUDGET_SLACK, what)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FACTORIES and kwargs.get("device") != "meta":
            probe = func(*args, **{**kwargs, "device": "meta"})
            self.used += probe.numel() * probe.element_size()
            if self.used > self.limit:
                raise SrlabError(f"{self.what} declares a net of more than {self.used / 2**30:.1f} GiB but holds "
                                 f"{(self.limit - BUDGET_SLACK) / BUDGET_FACTOR / 2**20:.1f} MiB of weights: "
                                 "refused (a damaged or hostile file)")
        return func(*args, **kwargs)


def check_declared(state_dict: dict, what: str) -> None:
    """One line if the tensors' shapes claim far more bytes than their storages hold (one
    number expanded to a huge shape, stride 0): checked before anything reads them."""
    declared = sum(v.numel() * v.element_size() for v in state_dict.values() if isinstance(v, torch.Tensor))
    held = held_bytes(state_dict)
    if declared > BUDGET_FACTOR * held + BUDGET_SLACK:
        raise SrlabError(f"{what}: its tensors declare {declared / 2**30:.1f} GiB but the file holds "
                         f"{held / 2**20:.1f} MiB: refused (a damaged or hostile file)")


def check_weights(state_dict: dict, parameter_names: set[str], what: str) -> None:
    """One line naming the first tensor that is not finite, or not floating point where the net
    has a parameter (int64/bool weights would be cast silently into a net that outputs garbage)."""
    check_declared(state_dict, what)
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        floating = value.is_floating_point() or value.is_complex()
        parameter_like = name in parameter_names or name.endswith((".weight", ".bias"))
        if parameter_like and not floating:
            raise SrlabError(f"{what}: tensor {name!r} holds {str(value.dtype).removeprefix('torch.')} values where "
                             "the net has floating-point weights: a damaged or wrongly converted file")
        if floating and value.numel() and not bool(torch.isfinite(value).all()):
            kind = "NaN" if bool(torch.isnan(value).any()) else "Inf"
            raise SrlabError(f"{what}: tensor {name!r} holds {kind} values; the net would output garbage "
                             "(the file was saved from a diverged run, or is damaged)")
