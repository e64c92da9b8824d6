"""srlab-prepare: convert a folder of HR images (or LR/HR pairs) into a memory-mappable store, once.

Decoding a whole 2040x1356 PNG for every training patch starves the GPU; the store
(`srlab.data.prepared`) holds the decoded pixels uncompressed, so a patch reads only its pages.
    srlab-prepare input=<folder of HR images> output=<store dir>
    srlab-prepare input=<HR folder> lr_input=<LR folder> scale=4 output=<store dir>   (pairs)
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from srlab.cli.entry import user_errors
from srlab.config.compose import CONFIG_DIR
from srlab.data.prepared import prepare_store


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="prepare")
def main(cfg: DictConfig) -> None:
    with user_errors():
        prepare_store(cfg.input, cfg.output, progress=bool(cfg.get("progress", True)), lr_input=cfg.get("lr_input"),
                      scale=cfg.get("scale"), modcrop=bool(cfg.get("modcrop", False)),
                      pair_pattern=cfg.get("pair_pattern"))


def cli() -> None:
    """The `srlab-prepare` console script: one line for an unknown key or option, then Hydra."""
    from srlab.cli.entry import hydra_entry

    hydra_entry("prepare", main)


if __name__ == "__main__":
    cli()
