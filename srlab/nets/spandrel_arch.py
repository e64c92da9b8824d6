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
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from srlab.errors import SrlabError
from srlab.ops.untrusted_files import read_model_file
from srlab.ops.weight_checks import AllocationBudget, check_weights

SCALE_KWARGS = ("upscale", "upscale_factor", "up_scale", "upscaling_factor", "scale")
MUTATES_INPUT = {"RCAN"}
BATCHNORM_ON_POOLED = {"DAT"}
ARCH_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*(\{scale\}[A-Za-z0-9_]*)?)?$")


def import_spandrel():
    try:
        import spandrel
    except ImportError:
        raise SrlabError("this net needs the spandrel package: pip install spandrel "
                         "(make install does it)") from None
    return spandrel


def arch_class(arch: str) -> type[nn.Module]:
    """"SPAN" -> spandrel.architectures.SPAN.SPAN; "PLKSR.RealPLKSR" -> ...PLKSR.RealPLKSR
    (RealCUGAN has one class per scale: "RealCUGAN.UpCunet{scale}x", formatted by the caller).
    Only names of that shape, and only nn.Module classes of spandrel.architectures: `arch` can
    come from a stranger's checkpoint."""
    import_spandrel()
    if not isinstance(arch, str) or not ARCH_NAME.match(arch):
        raise SrlabError(f"net.arch={str(arch)[:60]!r} is not a spandrel architecture name (e.g. SPAN or PLKSR.RealPLKSR)")
    module_name, _, class_name = arch.partition(".")
    try:
        module = importlib.import_module(f"spandrel.architectures.{module_name}")
        cls = getattr(module, class_name or module_name)
    except (ImportError, AttributeError):
        raise SrlabError(f"net.arch={arch}: spandrel has no such architecture class "
                         "(use a module of spandrel.architectures, e.g. SPAN or PLKSR.RealPLKSR)") from None
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)
            and cls.__module__.startswith("spandrel.architectures.")):
        raise SrlabError(f"net.arch={arch} is not a torch module class in spandrel")
    return cls


def scale_kwarg(cls: type[nn.Module]) -> str | None:
    params = inspect.signature(cls.__init__).parameters
    return next((name for name in SCALE_KWARGS if name in params), None)


class SpandrelNet(nn.Module):
    upsampling = "post"

    def __init__(self, arch: str, scale: int = 4, freeze_unused: bool = True, **hyperparameters):
        super().__init__()
        if not isinstance(arch, str) or not ARCH_NAME.match(arch):
            arch_class(arch)  # its one line
        arch = arch.format(scale=int(scale))
        cls = arch_class(arch)
        kwargs = dict(hyperparameters)
        key = scale_kwarg(cls)
        if key is not None:
            kwargs[key] = int(scale)
        try:
            model = cls(**kwargs)
        except TypeError as e:  # a key the class does not take: name it, as the schema does
            raise SrlabError(f"net.arch={arch}: {e}") from None
        self._adopt(model, arch, int(scale), self._describe(model, arch))
        if freeze_unused:
            self.freeze_unused()

    @staticmethod
    def config_signature(node: dict) -> type[nn.Module]:
        """The class whose keywords a config's extra keys must be (srlab/config/schema.py checks
        `net.*` against it before anything is built, as for srlab's own nets)."""
        return arch_class(str(node.get("arch", "")).format(scale=int(node.get("scale") or 4)))

    @classmethod
    def from_descriptor(cls, descriptor) -> "SpandrelNet":
        """Wrap a model spandrel loaded from a file (a community model): same padding, same
        traps, and `rebuild_config()` so a checkpoint trained from it no longer needs the file."""
        net = cls.__new__(cls)
        nn.Module.__init__(net)
        model = descriptor.model
        module = importlib.import_module(f"spandrel.architectures.{descriptor.architecture.id}")
        name = next((n for n, o in vars(module).items() if o is type(model)), type(model).__name__)
        arch = descriptor.architecture.id if name == descriptor.architecture.id else f"{descriptor.architecture.id}.{name}"
        net._adopt(model, arch, int(descriptor.scale), descriptor)
        return net

    def _adopt(self, model: nn.Module, arch: str, scale: int, descriptor) -> None:
        self.model, self.arch, self.scale = model, arch, scale
        self.arch_id = arch.partition(".")[0]
        self.clone_input = self.arch_id in MUTATES_INPUT
        self.min_batch = 2 if self.arch_id in BATCHNORM_ON_POOLED else 1
        requirements = descriptor.size_requirements
        self.multiple = max(1, int(requirements.multiple_of))
        self.minimum = max(1, int(requirements.minimum))
        self.supports_half = bool(descriptor.supports_half)
        self.supports_bfloat16 = bool(descriptor.supports_bfloat16)

    @property
    def hyperparameters(self) -> dict:
        return dict(getattr(self.model, "hyperparameters", {}))

    def rebuild_config(self) -> dict | None:
        """The `_target_` config that builds this net again (what checkpoints store), or None
        when a hyper-parameter is not a plain value a config can hold."""
        cls = arch_class(self.arch)
        defaults = {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()}
        plain = (str, int, float, bool, type(None), list, dict)
        values = {}
        for k, v in self.hyperparameters.items():
            v = list(v) if isinstance(v, tuple) else v
            if isinstance(v, plain):
                values[k] = v
            elif defaults.get(k, inspect.Parameter.empty) is not v:  # e.g. RCAN's conv=default_conv: a default
                return None
        values.pop(scale_kwarg(cls), None)
        return {"_target_": f"{__name__}.SpandrelNet", "arch": self.arch, "scale": self.scale, **values}

    def detect(self):
        """spandrel's descriptor of this net's own state dict: architecture, scale, size
        requirements, dtypes. What a tool loading the exported file will see."""
        return self._describe(self.model, self.arch)

    @staticmethod
    def _describe(model: nn.Module, arch: str):
        spandrel = import_spandrel()
        try:
            return spandrel.ModelLoader().load_from_state_dict(model.state_dict())
        except Exception as e:  # noqa: BLE001 - spandrel raises several kinds
            raise SrlabError(f"spandrel does not detect net.arch={arch} with these hyper-parameters "
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


def load_file(path: str | Path, trust_checkpoint: bool = False) -> SpandrelNet:
    """A community model file (.pth, .pt, .ckpt, .safetensors: a bare state dict or the usual
    `params` / `params_ema` / `state_dict` / `model` wrappers), read as data
    (srlab/ops/untrusted_files.py: no pickle code, no TorchScript unless trusted, no zip bomb)."""
    spandrel = import_spandrel()
    path = Path(str(path)).expanduser()
    obj = read_model_file(path, trust_checkpoint, what="model file")
    if not isinstance(obj, dict):
        raise SrlabError(f"{path} holds a {type(obj).__name__}, not a state dict: pass a .pth, .pt, .ckpt "
                         "or .safetensors state dict")
    try:
        state_dict = spandrel.canonicalize_state_dict(obj)
    except Exception as e:  # noqa: BLE001 - odd nesting spandrel does not expect
        raise SrlabError(f"{path} cannot be read as a model file ({type(e).__name__}): pass a .pth, .pt, .ckpt "
                         "or .safetensors state dict") from None
    return from_state_dict(state_dict, str(path))


def from_state_dict(state_dict: dict, what: str) -> SpandrelNet:
    """The SpandrelNet of a (canonicalized) state dict, or one line saying what spandrel found.
    The net spandrel builds is held to a budget set by the bytes the file holds, and the
    weights must be finite floats (srlab/ops/weight_checks.py)."""
    spandrel = import_spandrel()
    state_dict = spandrel.canonicalize_state_dict(state_dict)
    tensors = {k: v for k, v in state_dict.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise SrlabError(f"{what} holds no tensors: it was not written by srlab-train or srlab-export, "
                         "and it is no model file spandrel reads")
    check_weights(tensors, set(), what)
    try:
        with AllocationBudget.for_file(tensors, what):
            descriptor = spandrel.ModelLoader().load_from_state_dict(tensors)
    except SrlabError:
        raise
    except spandrel.UnsupportedModelError:
        raise SrlabError(f"{what}: spandrel {spandrel.__version__} recognises no architecture in its "
                         f"{len(tensors)} tensors (first key {next(iter(tensors))!r}), and it was not written "
                         "by srlab-train or srlab-export: not a model file srlab can run") from None
    except Exception as e:  # noqa: BLE001 - detected, but the weights do not fit
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise SrlabError(f"{what}: spandrel could not load it ({reason})") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise SrlabError(f"{what} is a {descriptor.architecture.name} {descriptor.purpose} model "
                         "(it needs a mask): srlab runs image-to-image models only")
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        raise SrlabError(f"{what} is a {descriptor.architecture.name} model with {descriptor.input_channels} "
                         f"input / {descriptor.output_channels} output channels: srlab runs RGB models")
    return SpandrelNet.from_descriptor(descriptor)


def pretrained(weights: str, scale: int | None = None, trust_checkpoint: bool = False) -> SpandrelNet:
    """`net=pretrained net.weights=<file>`: fine-tune a community model. Architecture and
    hyper-parameters come from the file; the run's checkpoint stores them (rebuild_config),
    so it no longer needs the file. `net.trust_checkpoint=true` admits pickle code and
    TorchScript (it runs whatever code the file holds)."""
    net = load_file(weights, trust_checkpoint)
    if scale is not None and net.scale != int(scale):
        raise SrlabError(f"net.weights={weights} is a x{net.scale} {net.arch} model but scale={scale}: "
                         f"pass scale={net.scale}")
    net.freeze_unused()
    return net
