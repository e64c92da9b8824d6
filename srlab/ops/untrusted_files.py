"""Opening a model file that came from a stranger: data in, never code run.

Every file srlab is handed (`ckpt_path=`, `net.weights=`, `approach.init_from=`, a resume
checkpoint) goes through `read_model_file`, which, before memory is spent or anything runs:
- refuses what is not a regular file (a folder named x.pth, a FIFO that would hang the read,
  a device) with a line that says which it is;
- refuses a zip whose records inflate far beyond the file's size (PyTorch stores its records
  uncompressed, so a deflated 1 GiB record in a 1 MB file is a bomb, not a checkpoint);
- refuses TorchScript (a zip with `code/`: loading it runs the TorchScript it holds, whose
  `__setstate__` can write files or loop forever) unless `trust_checkpoint=true`;
- reads pickles with `torch.load(weights_only=True)`, then spandrel's restricted unpickler
  (community files with a pickled argparse Namespace beside their weights), and runs
  pickle's code only with `trust_checkpoint=true`;
- reads safetensors (whose header the safetensors library checks against the file's size),
  and an srlab export's metadata as JSON with the fields it must have.
Messages say which case it is: code payload, damaged file, folder, not a model.
"""
from __future__ import annotations

import json
import pickle
import re
import stat
import warnings
import zipfile
from pathlib import Path

import torch

from srlab.errors import SrlabError

EXPORT_FORMAT = "srlab-net/1"
INFLATE_SLACK = 16 << 20  # bytes a zip may inflate beyond twice its size (headers, small pickles)
TRUST_HINT = "if you trust its source, pass trust_checkpoint=true (that runs whatever code the file holds)"


def check_regular_file(path: Path, what: str = "checkpoint") -> None:
    """One line for a missing path, a folder, or anything that is not a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SrlabError(f"{what} {path} not found: pass ckpt_path=<a .ckpt from srlab-train, a .srlab.pt "
                         "from srlab-export or a model file spandrel reads>") from None
    except OSError as e:
        raise SrlabError(f"{what} {path} cannot be opened: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise SrlabError(f"{what} {path} is a folder, not a model file: pass the file inside it")
    if not stat.S_ISREG(mode):
        raise SrlabError(f"{what} {path} is not a regular file (a FIFO, socket or device): pass a model file")


def zip_members(path: Path) -> list[zipfile.ZipInfo] | None:
    """The records of a zip-format file, None for any other file."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            return z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
        raise SrlabError(f"checkpoint {path} is a damaged zip file: download or copy it again") from None


def check_zip(path: Path, members: list[zipfile.ZipInfo], trust: bool) -> None:
    size = path.stat().st_size
    inflated = sum(m.file_size for m in members)
    if inflated > 2 * size + INFLATE_SLACK:
        raise SrlabError(f"checkpoint {path} declares {inflated / 2**20:.0f} MiB of records in a "
                         f"{size / 2**20:.1f} MiB file (a zip bomb, not a PyTorch checkpoint): refused")
    if is_torchscript(members) and not trust:
        raise SrlabError(f"{path} is a TorchScript file: loading it runs the code it holds; use a state dict "
                         f"(.pth/.safetensors), or {TRUST_HINT}")


def is_torchscript(members: list[zipfile.ZipInfo] | None) -> bool:
    """A TorchScript archive holds its code (`<root>/code/...`) and constants beside the weights."""
    return bool(members) and any(m.filename.split("/")[1:2] == ["code"] or m.filename.endswith("/constants.pkl")
                                 for m in members)


def _load(path: Path, **kwargs):
    with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise for users
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", **kwargs)


def _damaged(path: Path) -> SrlabError:
    return SrlabError(f"checkpoint {path} is damaged or not a PyTorch file (it could not be read as one): "
                      "pass a .ckpt from srlab-train, a .srlab.pt from srlab-export or a model file")


def load_pickle(path: Path, trust: bool):
    """torch.load without code; then spandrel's restricted unpickler; code only when trusted."""
    try:
        return _load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's safe unpickler names the class it refused: "Unsupported global: GLOBAL x.Y".
        if "Unsupported global" not in str(e) and "weights_only" not in str(e):
            raise _damaged(path) from None
        named = re.search(r"GLOBAL ([\w.]+)", str(e))  # torch names the class or function it refused
        refused = named.group(1)[:120] if named else "a Python object"
    except Exception:  # zip/miniz errors, EOF, garbage: all mean "not a usable file"
        raise _damaged(path) from None
    try:  # plain weights next to a pickled extra (argparse Namespace, numpy scalars): no code runs
        from spandrel.__helpers.unpickler import RestrictedUnpickle

        return _load(path, pickle_module=RestrictedUnpickle)
    except Exception:  # noqa: BLE001 - it found a global it does not allow, or the file is broken
        pass
    if not trust:
        raise SrlabError(f"checkpoint {path} holds a code payload (pickle asks to run {refused}); {TRUST_HINT}")
    try:
        return _load(path, weights_only=False)
    except Exception as e:  # noqa: BLE001
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise SrlabError(f"checkpoint {path} could not be unpickled even as trusted: {reason}") from None


def load_torchscript(path: Path) -> dict:
    """Trusted only (check_zip refused it otherwise): the state dict of a scripted module."""
    try:
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    except Exception as e:  # noqa: BLE001
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise SrlabError(f"TorchScript file {path} could not be loaded: {reason}") from None


def load_safetensors(path: Path) -> dict:
    try:
        from safetensors import safe_open
    except ImportError:
        raise SrlabError(f"{path} is a safetensors file but the safetensors package is not installed: "
                         "pip install safetensors, or use the .srlab.pt file") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state_dict = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - truncated or not safetensors at all
        reason = " ".join(str(e).split())[:120] or type(e).__name__
        raise SrlabError(f"{path} is not a readable safetensors file ({reason})") from None
    if meta.get("format") != EXPORT_FORMAT:
        return state_dict  # a community file: spandrel's to recognise
    try:
        net_config, scale = json.loads(meta["net_config"]), int(meta["scale"])
    except (KeyError, TypeError, ValueError):
        raise SrlabError(f"{path} says format {EXPORT_FORMAT} but its metadata lacks a JSON net_config "
                         "or an integer scale: re-export it with srlab-export") from None
    if not isinstance(net_config, dict):
        raise SrlabError(f"{path}: its net_config metadata is not a JSON object: re-export it with srlab-export")
    return {"format": EXPORT_FORMAT, "net_config": net_config, "scale": scale, "state_dict": state_dict}


def read_model_file(path: str | Path, trust_checkpoint: bool = False, what: str = "checkpoint"):
    """The object a model file holds (a dict for every format srlab reads), as data."""
    path = Path(path).expanduser()
    check_regular_file(path, what)
    if path.suffix.lower() == ".safetensors":
        return load_safetensors(path)
    members = zip_members(path)
    if members is not None:
        check_zip(path, members, trust_checkpoint)
        if is_torchscript(members):
            return load_torchscript(path)
    return load_pickle(path, trust_checkpoint)
