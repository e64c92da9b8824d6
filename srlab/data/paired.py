"""Training and validation on LR/HR pairs given as files (`data=paired`).

The synthetic path (`SRDataModule`) makes each LR by degrading its HR; here both come from
disk: folders matched by name (`srlab.data.pairs`), or a store `srlab-prepare` wrote with
`lr_input=`. A training item is an aligned pair of patches: an LR window of patch_size/scale
px at LR coordinates (top, left) and the HR window at scale x those, then the same flips and
90-degree rotation on both. Validation takes whole pairs (an optional centred crop on the
LR grid). Batches are the synthetic path's ({"lr", "hr", "gray", "name"}), so every approach
trains on them unchanged.

`degradation=none` (the default of `data=paired`) uses the LR as given. Another degradation
degrades the given LR further at its own size (`degradation.scale=1`), e.g. extra JPEG and
noise on DIV2K's bicubic LR: batched on the device like the synthetic path, seeded per batch.
Pairs travel to the device as uint8 when both files are 8-bit, as HR patches do.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import Dataset

from srlab.data.datamodule import SRDataModule
from srlab.data.datasets import TrainPatches, flip_rotate
from srlab.data.degrade import NoDegradation
from srlab.data.images import image_size, read_image
from srlab.data.pairs import fitted_hr_size, match_pairs, misfit
from srlab.data.prepared import load_image, to_float
from srlab.data.sources import hashed_split
from srlab.errors import SrlabError

log = logging.getLogger(__name__)


class PairedImages:
    """Named (HR, LR) image pairs from files, read lazily or decoded once into RAM (`preload`).

    `get(i)` -> (hr, lr, gray): [C,H,W] with C in {1,3}, uint8 when preloaded (else float),
    HR already cropped to scale x LR. A pair is gray when both files are.
    """

    def __init__(self, items: list[tuple[str, object, object]], scale: int, modcrop: bool = False,
                 preload: bool = False):
        self.items, self.scale, self.modcrop = list(items), int(scale), bool(modcrop)
        self.names = [n for n, _, _ in self.items]
        self.data: list | None = [] if preload else None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def all_uint8(self) -> bool:
        return self.data is not None

    def describe(self, i: int) -> str:
        return f"{self.items[i][1]} with {self.items[i][2]}"

    def sizes(self, i: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(HR size, LR size) from the file headers (cheap)."""
        return image_size(self.items[i][1]), image_size(self.items[i][2])

    def _decode(self, i: int):
        (hr, hr_gray), (lr, lr_gray) = read_image(self.items[i][1]), read_image(self.items[i][2])
        return hr, lr, hr_gray and lr_gray

    def raw(self, i: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(hr, lr, gray) as stored: HR not cropped yet."""
        return self.data[i] if self.data is not None else self._decode(i)

    def get(self, i: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        hr, lr, gray = self.raw(i)
        h, w = lr.shape[-2] * self.scale, lr.shape[-1] * self.scale
        return hr[:, :h, :w], lr, gray

    def load(self) -> None:
        """Preload: decode every pair now, kept as uint8 (1 channel when gray; 16-bit files
        lose their extra precision, as `data.cache` does for folders)."""
        data = []
        for i in range(len(self)):
            hr, lr, gray = self._decode(i)
            data.append((*((x[:1] if gray else x).mul(255).round().to(torch.uint8) for x in (hr, lr)), gray))
        self.data = data

    def keep(self, ids: list[int]) -> PairedImages:
        out = PairedImages([self.items[i] for i in ids], self.scale, self.modcrop)
        out.data = [self.data[i] for i in ids] if self.data is not None else None
        return out


class PreparedPairs(PairedImages):
    """The pairs of an `srlab-prepare input=... lr_input=...` store, memory-mapped."""

    def __init__(self, store_dir, entries: list[dict], scale: int):
        self.store_dir, self.entries = Path(store_dir), list(entries)
        super().__init__([(e["name"], self.store_dir / e["file"], self.store_dir / e["lr"]["file"])
                          for e in self.entries], scale)
        self._mapped: dict[int, tuple] = {}

    @property
    def all_uint8(self) -> bool:
        return all(e["dtype"] == "uint8" and e["lr"]["dtype"] == "uint8" for e in self.entries)

    def sizes(self, i: int):
        e = self.entries[i]
        return (int(e["height"]), int(e["width"])), (int(e["lr"]["height"]), int(e["lr"]["width"]))

    def raw(self, i: int):
        if i not in self._mapped:
            e = self.entries[i]
            (hr, gray), (lr, _) = load_image(self.store_dir, e), load_image(self.store_dir, e["lr"])
            self._mapped[i] = (hr, lr, gray)
        return self._mapped[i]

    def keep(self, ids: list[int]) -> PreparedPairs:
        return PreparedPairs(self.store_dir, [self.entries[i] for i in ids], self.scale)


def usable_pairs(pairs: PairedImages, min_lr: int, what: str, decode: bool = False) -> PairedImages:
    """The pairs that open (`decode`: decode entirely), fit the scale and have an LR of at least
    `min_lr` px on its short side; one warning per skipped pair."""
    keep = []
    for i in range(len(pairs)):
        try:
            if decode:
                hr, lr, _ = pairs.raw(i)
                hr_size, lr_size = tuple(hr.shape[-2:]), tuple(lr.shape[-2:])
            else:
                hr_size, lr_size = pairs.sizes(i)
        except SrlabError as e:
            log.warning("skipped %s pair: %s", what, e)
            continue
        if fitted_hr_size(hr_size, lr_size, pairs.scale, pairs.modcrop) is None:
            log.warning("skipped %s %s", what, misfit(pairs.describe(i), hr_size, lr_size, pairs.scale, pairs.modcrop))
            continue
        if min(lr_size) < min_lr:
            log.warning("skipped %s pair %s: LR %dx%d px, smaller than the %d px LR patch",
                        what, pairs.describe(i), lr_size[1], lr_size[0], min_lr)
            continue
        keep.append(i)
    return pairs.keep(keep)


class PairedTrainPatches(TrainPatches):
    """`length` aligned random (LR, HR) patches; item i from pair i % n, seeded by (seed, i).

    LR window at (top, left) in LR px, HR window at (scale*top, scale*left): the HR crop always
    starts on the LR grid, so LR pixel (y, x) covers HR pixels [s*y, s*y+s) in both patches.
    """

    def __init__(self, pairs: PairedImages, degradation, scale: int, patch_size: int, length: int, seed: int = 0):
        super().__init__(pairs, degradation, scale, patch_size, length, seed)

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + int(i)) % 2**63)
        k, hr, lr, gray = self._read(int(i) % self.length % len(self.store))
        s, p = self.scale, self.patch_size // self.scale
        top = int(torch.randint(lr.shape[-2] - p + 1, (), generator=g))
        left = int(torch.randint(lr.shape[-1] - p + 1, (), generator=g))
        lr_patch = lr[:, top: top + p, left: left + p]
        hr_patch = hr[:, s * top: s * (top + p), s * left: s * (left + p)]
        hr_patch, lr_patch = flip_rotate((hr_patch, lr_patch), g)
        item = {"gray": torch.tensor(gray), "name": self.store.names[k], "id": torch.tensor(int(i))}
        if self.raw_uint8:
            item["hr"], item["lr"] = (x.expand(3, *x.shape[-2:]).contiguous() for x in (hr_patch, lr_patch))
        else:
            item["hr"], item["lr"] = to_float(hr_patch), to_float(lr_patch)
            if self.degradation is not None:
                item["lr"] = self.degradation(item["lr"], generator=g)
        return item


class PairedValImages(Dataset):
    """Whole pairs; `max_size` (HR px) takes a centred crop on the LR grid first. LR degraded
    further only with a degradation on top, from a generator seeded by the pair's index."""

    def __init__(self, pairs: PairedImages, degradation, scale: int, seed: int = 0, max_size: int | None = None):
        self.store, self.degradation, self.scale, self.seed = pairs, degradation, scale, seed
        self.max_size = max_size

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> dict:
        hr, lr, gray = self.store.get(i)
        s = self.scale
        if self.max_size:
            ch, cw = (min(self.max_size // s, n) for n in lr.shape[-2:])
            top, left = (lr.shape[-2] - ch) // 2, (lr.shape[-1] - cw) // 2
            lr = lr[:, top: top + ch, left: left + cw]
            hr = hr[:, s * top: s * (top + ch), s * left: s * (left + cw)]
        hr, lr = to_float(hr), to_float(lr)
        if self.degradation is not None:
            lr = self.degradation(lr, generator=torch.Generator().manual_seed(self.seed + i))
        return {"lr": lr, "hr": hr, "gray": torch.tensor(gray), "name": self.store.names[i]}


class PairedDataModule(SRDataModule):
    """LR/HR pairs from `train_dir` + `train_lr_dir` (and `val_dir` + `val_lr_dir`, else a hashed
    split of the pairs), or from a paired store `srlab-prepare` wrote (`train_dir=<store>`)."""

    def __init__(self, train_dir: str, train_lr_dir: str | None = None, val_dir: str | None = None,
                 val_lr_dir: str | None = None, val_fraction: float = 0.1, pair_pattern: str | None = None,
                 modcrop: bool = False, cache: bool = False, **kw):
        degradation = kw.get("degradation")
        if isinstance(degradation, NoDegradation):
            kw["degradation"] = None
        elif degradation is not None and int(getattr(degradation, "scale", 1)) != 1:
            raise SrlabError(f"data=paired: {type(degradation).__name__} would make LR at 1/{kw.get('scale')} of "
                             "LR files that are already small: add degradation=none (the LR as given), or "
                             "degradation.scale=1 to degrade the given LR further at its own size")
        elif hasattr(degradation, "train_batch"):
            raise SrlabError("data=paired: degradation=realesrgan makes its own LR from the HR; use degradation=none "
                             "or crapify with degradation.scale=1 on top of the given LR")
        super().__init__(**kw)
        if (val_dir is None) != (val_lr_dir is None):
            raise SrlabError("data=paired: give data.val_dir and data.val_lr_dir together (or neither: a split "
                             "of the training pairs)")
        self.train_dir, self.train_lr_dir, self.val_dir, self.val_lr_dir = train_dir, train_lr_dir, val_dir, val_lr_dir
        self.val_fraction, self.pair_pattern = val_fraction, pair_pattern
        self.modcrop, self.cache = bool(modcrop), bool(cache)

    def _pairs(self, hr_dir, lr_dir, what: str) -> PairedImages:
        """Pairs of two folders, or of a paired store when no LR folder is given."""
        from srlab.data.prepared import is_store, open_store, store_scale

        if lr_dir is not None:
            return PairedImages(match_pairs(hr_dir, lr_dir, self.pair_pattern, what), self.scale, self.modcrop)
        if not is_store(hr_dir) or store_scale(hr_dir) is None:
            raise SrlabError(f"data=paired: {what}={hr_dir} needs its LR folder ({what.replace('_dir', '_lr_dir')}"
                             "=...), or must be a paired store (srlab-prepare input=<hr> lr_input=<lr> scale=...)")
        if store_scale(hr_dir) != self.scale:
            raise SrlabError(f"{what}={hr_dir} holds x{store_scale(hr_dir)} pairs, not scale={self.scale}")
        return PreparedPairs(hr_dir, open_store(hr_dir), self.scale)

    def _stores(self):
        train = self._pairs(self.train_dir, self.train_lr_dir, "data.train_dir")
        if self.val_dir is not None:
            return train, self._pairs(self.val_dir, self.val_lr_dir, "data.val_dir")
        train_ids, val_ids = hashed_split(train.names, self.val_fraction, f"data.train_dir: {self.train_dir}")
        return train.keep(train_ids), train.keep(val_ids)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self._stores()
        n_train = len(train)
        train = usable_pairs(train, self.patch_size // self.scale, "training")
        if len(train) == 0:
            raise SrlabError(f"none of the {n_train} training pair(s) is usable (see the warnings above): each is "
                             f"unreadable, does not fit scale={self.scale}, or has an LR smaller than "
                             f"data.patch_size/scale={self.patch_size // self.scale} px")
        val = usable_pairs(val, 1, "val", decode=True)
        if len(val) == 0:
            raise SrlabError("no usable val pair (see the warnings above): fix them or set data.val_dir/val_lr_dir")
        if self.cache and not isinstance(train, PreparedPairs):
            train.load()
        world = self._world()[0]
        if world > 1 and len(val) < world:
            raise SrlabError(f"{len(val)} val pair(s) for {world} processes: each process needs at least one; add "
                             "val pairs or use fewer devices")
        length = max(len(train) * self.train_repeats, self.batch_size * world)
        on_loader = self.degrade_on == "loader"
        self.train_set = PairedTrainPatches(train, self.degradation if on_loader else None, self.scale,
                                            self.patch_size, length, seed=self.seed)
        self.val_set = PairedValImages(val, self.degradation, self.scale, self.seed, self.val_crop)
        log.info("data: %d train pairs (%d patches/epoch), %d val pairs, given LR%s", len(train), length, len(val),
                 f" + {self.degradation!r} on the {self.degrade_on}" if self.degradation is not None else "")

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        out = super().transfer_batch_to_device(batch, device, dataloader_idx)
        if "id" in batch:  # training: the gray flags stay on the CPU for a degradation on top
            out["gray_cpu"] = batch["gray"]
        return out

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Training pairs that travelled as uint8 become float; a degradation on top runs here."""
        gray, ids = batch.pop("gray_cpu", None), batch.pop("id", None)
        if ids is None:
            return batch
        for key in ("hr", "lr"):
            x = batch[key]
            batch[key] = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        if self.degradation is not None and self.degrade_on == "device":
            first = int(ids[0]) if len(ids) else 0
            generator = torch.Generator().manual_seed((1000003 * (self.seed + 1) + first) % 2**63)
            batch["lr"] = self.degradation.batch(batch["lr"], gray=gray, generator=generator)
        return batch
