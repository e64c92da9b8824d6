"""srlab-export: turn a training checkpoint into a small, safe inference file.

A Lightning checkpoint carries optimizer state, loop state and the whole training config;
to ship a model only the net's config, its scale and its weights are needed. The exported
file, `{"format": "srlab-net/1", "net_config", "scale", "state_dict"}`, holds only dicts,
strings, numbers and tensors, so it loads with `torch.load(weights_only=True)` and
`srlab.inference.checkpoint.load_net` rebuilds the net without Hydra or Lightning. A
`.srlab.safetensors` twin is written too (config in its metadata), for tools that only accept
that format.

`format=onnx` writes `<stem>.onnx` instead (`srlab.inference.onnx_export`): dynamic batch/height/width,
input "lr" [N,3,h,w] in [0,1], output "sr" [N,3,h*s,w*s] (not clamped), verified against
PyTorch with onnxruntime before the command returns.

`format=safetensors` / `format=pth` write the bare state dict the rest of the field exchanges
(chaiNNer, traiNNer-redux, spandrel), checked by loading it with spandrel before it is kept
(`srlab.inference.interchange`); nets without a spandrel counterpart get one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from srlab.cli.entry import user_errors
from srlab.config.compose import CONFIG_DIR
from srlab.errors import SrlabError
from srlab.inference.checkpoint import EXPORT_FORMAT, load_net
from srlab.ops.files import atomic_path


FORMATS = ("srlab", "onnx", "safetensors", "pth")


def default_output(ckpt_path: str | Path, format: str = "srlab") -> Path:
    """Next to the checkpoint: best.ckpt -> best.srlab.pt, best.onnx, best.safetensors, best.pth."""
    stem = Path(ckpt_path).name
    for suffix in (".ckpt", ".pt", ".pth", ".safetensors", ".srlab"):
        stem = stem.removesuffix(suffix)
    return Path(ckpt_path).with_name(f"{stem}.srlab.pt" if format == "srlab" else f"{stem}.{format}")


def export_interchange(net, scale: int, out: Path, format: str, net_config: dict | None = None) -> Path:
    """A bare state dict spandrel detects (srlab/inference/interchange.py), as .safetensors or .pth."""
    from srlab.inference.interchange import interchange_state_dict

    state_dict, descriptor, dropped = interchange_state_dict(net, scale, net_config)
    with atomic_path(out) as tmp:  # never through a symlink at `out`, never a half file
        if format == "safetensors":
            from safetensors.torch import save_file

            save_file(state_dict, str(tmp))
        else:
            torch.save(state_dict, tmp)
    left_out = f", {len(dropped)} constant buffers left out (spandrel rebuilds them)" if dropped else ""
    print(f"spandrel reads it as {descriptor.architecture.name} x{descriptor.scale}, output equal to srlab's "
          f"within 1e-5{left_out}")
    return out


def export(ckpt_path: str | Path, output: str | Path | None = None, trust_checkpoint: bool = False,
           safetensors: bool | str = "auto", format: str = "srlab", size: str | None = None) -> list[Path]:
    """Write the inference file(s) for `ckpt_path`; returns the paths written."""
    if format not in FORMATS:
        raise SrlabError(f"format={format} is not one of {', '.join(FORMATS)}")
    net, info = load_net(ckpt_path, trust_checkpoint=trust_checkpoint)
    out = Path(output) if output else default_output(ckpt_path, format)
    if out.resolve() == Path(ckpt_path).resolve():
        raise SrlabError(f"output={out} would overwrite the checkpoint: choose another file name")
    if format == "onnx":
        from srlab.inference.onnx_export import export_onnx_graph, parse_size

        with atomic_path(out) as tmp:
            diff, graph = export_onnx_graph(net, tmp, size=parse_size(size))
        print(f"{graph}; onnxruntime vs PyTorch on a random image: max abs difference {diff:.2g}")
        return [out]
    if format in ("safetensors", "pth"):
        return [export_interchange(net, info["scale"], out, format, info["net_config"])]
    # clone(): tensors that share storage with others (views) would drag the whole storage along.
    state_dict = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    payload = {"format": EXPORT_FORMAT, "net_config": info["net_config"], "scale": info["scale"],
               "state_dict": state_dict}
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    written = [out]
    if safetensors in (True, "auto", "true"):
        try:
            from safetensors.torch import save_file
        except ImportError:
            if safetensors != "auto":
                raise SrlabError("safetensors=true but the safetensors package is not installed: "
                                 "pip install safetensors, or pass safetensors=false") from None
        else:
            # .srlab.safetensors: srlab's config in its metadata; format=safetensors is the bare file
            twin = out.with_name(f"{out.name.removesuffix('.pt').removesuffix('.srlab')}.srlab.safetensors")
            meta = {"format": EXPORT_FORMAT, "net_config": json.dumps(info["net_config"]), "scale": str(info["scale"])}
            with atomic_path(twin) as tmp:
                save_file(state_dict, str(tmp), metadata=meta)
            written.append(twin)
    return written


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="export")
def main(cfg: DictConfig) -> None:
    with user_errors():
        for path in export(cfg.ckpt_path, cfg.get("output"), bool(cfg.get("trust_checkpoint", False)),
                           cfg.get("safetensors", "auto"), str(cfg.get("format", "srlab")), cfg.get("size")):
            print(path)


def cli() -> None:
    """The `srlab-export` console script: one line for an unknown key or option, then Hydra."""
    from srlab.cli.entry import hydra_entry

    hydra_entry("export", main)


if __name__ == "__main__":
    cli()
