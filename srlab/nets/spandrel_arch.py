"""Any SR architecture of spandrel (chaiNNer's model library), trained by srlab.

Why spandrel's own classes and not a copy: the field exchanges models as state dicts of these
classes (OpenModelDB, chaiNNer, traiNNer-redux); training the very class spandrel detects
makes every srlab run a file those tools open, and every community file a net srlab can
fine-tune. `SpandrelNet(arch="SPAN", scale=4, **hyperparameters)` builds
`spandrel.architectures.SPAN.SPAN(upscale=4, ...)`; `arch="PLKSR.RealPLKSR"` picks a second
class of a module. Its weights sit under `model.` (a checkpoint's `net.model.*`); an export
strips that prefix and gets the bare state dict spandrel expects.

The traps of training spandrel's inference-first classes are handled here, where they bite:
- RCAN multiplies its input in place (`x *= rgb_range`): the caller's LR is cloned first;
- a net that needs H and W multiples of n (DRCT: 16, window nets: their window) or a minimum
  size (RealCUGAN) gets reflect-padding and its output cropped, in training and in tiling
  (`multiple` tells the tiler to start tiles on that grid);
- BatchNorm on pooled features (DAT) cannot train on one image: one line, not a NaN;
- parameters that get no gradient by design (SPAN's re-parameterised inference convs, FDAT,
  SwiftSRGAN) are frozen at build (found by one tiny backward), so DDP needs no
  `find_unused_parameters` and the optimizer does not carry them.
"""
from __future__ import annotations

import importlib
import inspect

import torch
import torch.nn.functional as F
from torch import nn

from srlab.errors import SrlabError

SCALE_KWARGS = ("upscale", "upscale_factor", "up_scale", "upscaling_factor", "scale")
MUTATES_INPUT = {"RCAN"}
BATCHNORM_ON_POOLED = {"DAT"}


def import_spandrel():
    try:
        import spandrel
    except ImportError:
        raise SrlabError("this net needs the spandrel package: pip install spandrel "
                         "(make install does it)") from None
    return spandrel


def arch_class(arch: str) -> type[nn.Module]:
    """"SPAN" -> spandrel.architectures.SPAN.SPAN; "PLKSR.RealPLKSR" -> ...PLKSR.RealPLKSR
    (RealCUGAN has one class per scale: "RealCUGAN.UpCunet{scale}x", formatted by the caller)."""
    import_spandrel()
    module_name, _, class_name = arch.partition(".")
    try:
        module = importlib.import_module(f"spandrel.architectures.{module_name}")
        cls = getattr(module, class_name or module_name)
    except (ImportError, AttributeError):
        raise SrlabError(f"net.arch={arch}: spandrel has no such architecture class "
                         "(use a module of spandrel.architectures, e.g. SPAN or PLKSR.RealPLKSR)") from None
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise SrlabError(f"net.arch={arch} is not a torch module class in spandrel")
    return cls


def scale_kwarg(cls: type[nn.Module]) -> str | None:
    params = inspect.signature(cls.__init__).parameters
    return next((name for name in SCALE_KWARGS if name in params), None)


class SpandrelNet(nn.Module):
    upsampling = "post"

    def __init__(self, arch: str, scale: int = 4, freeze_unused: bool = True, **hyperparameters):
        super().__init__()
        arch = arch.format(scale=int(scale))
        cls = arch_class(arch)
        kwargs = dict(hyperparameters)
        key = scale_kwarg(cls)
        if key is not None:
            kwargs[key] = int(scale)
        try:
            self.model = cls(**kwargs)
        except TypeError as e:  # a key the class does not take: name it, as the schema does
            raise SrlabError(f"net.arch={arch}: {e}") from None
        self.arch, self.scale = arch, int(scale)
        self.arch_id = arch.partition(".")[0]
        self.clone_input = self.arch_id in MUTATES_INPUT
        self.min_batch = 2 if self.arch_id in BATCHNORM_ON_POOLED else 1
        requirements = self.detect().size_requirements
        self.multiple = max(1, int(requirements.multiple_of))
        self.minimum = max(1, int(requirements.minimum))
        if freeze_unused:
            self.freeze_unused()

    @property
    def hyperparameters(self) -> dict:
        return dict(getattr(self.model, "hyperparameters", {}))

    def detect(self):
        """spandrel's descriptor of this net's own state dict: architecture, scale, size
        requirements, dtypes. What a tool loading the exported file will see."""
        spandrel = import_spandrel()
        try:
            return spandrel.ModelLoader().load_from_state_dict(self.model.state_dict())
        except Exception as e:  # noqa: BLE001 - spandrel raises several kinds
            raise SrlabError(f"spandrel does not detect net.arch={self.arch} with these hyper-parameters "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                             "use a preset of configs/net/") from None

    def freeze_unused(self) -> None:
        """One backward on a tiny input in train mode; parameters that got no gradient never
        will (they serve the inference path only) and are frozen."""
        side = max(self.multiple, self.minimum, 8)
        side = -(-side // self.multiple) * self.multiple
        was_training = self.training
        self.train()
        try:
            self(torch.rand(self.min_batch, 3, side, side)).mean().backward()
        except Exception:  # noqa: BLE001 - the schema's check_net reports size problems
            self.zero_grad(set_to_none=True)
            self.train(was_training)
            return
        for p in self.parameters():
            if p.grad is None:
                p.requires_grad_(False)
            p.grad = None
        self.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < self.min_batch:
            raise SrlabError(f"net {self.arch} has BatchNorm on pooled features and cannot train on "
                             f"batches of {x.shape[0]}: use data.batch_size >= {self.min_batch}")
        h, w = x.shape[-2:]
        ph = max(self.minimum, -(-h // self.multiple) * self.multiple) - h
        pw = max(self.minimum, -(-w // self.multiple) * self.multiple) - w
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        elif self.clone_input:
            x = x.clone()
        out = self.model(x)
        if isinstance(out, (tuple, list)):  # MMRealSR: (SR, its degradation estimates)
            out = out[0]
        if ph or pw:
            out = out[..., : h * self.scale, : w * self.scale]
        return out
