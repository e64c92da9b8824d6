"""Datasets behind the data modules: where HR pixels live, and how items are cut from them.

- `ImageStore`: named HR images, decoded lazily from files, or once into RAM (`preload`).
- `PreparedImages`: the same, memory-mapped from a store written by `srlab-prepare`.
- `TrainPatches`: random HR patches with the 8 flips/rotations. With a degradation it also
  makes the LR patch (the loader path); without one it hands over the HR patch alone, as
  uint8 when the source is 8-bit (4x fewer bytes to collate, pin and copy), and the data
  module degrades the whole batch on the device after transfer.
- `ValImages`: whole images, LR from a degradation seeded by the image index.
- `UnpaddedDistributedSampler`: every val image exactly once over all DDP ranks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset, DistributedSampler

from srlab.data.images import image_size, read_image
from srlab.data.prepared import load_image, to_float
from srlab.errors import SrlabError
from srlab.ops.imresize import imresize

log = logging.getLogger(__name__)


class ImageStore:
    """Named HR images, read lazily from disk or decoded once into RAM (`preload`).

    Preloaded images are kept as uint8 (4x less RAM than float; 16-bit sources lose their
    extra precision) and loaded in the main process, so forked loader workers share them.
    """

    def __init__(self, items: list[tuple[str, os.PathLike]], preload: bool = False):
        self.data = None
        if preload:
            kept, self.data = [], []
            for name, p in items:
                try:
                    img, gray = read_image(p)
                except SrlabError as e:  # one bad file must not stop a run on the others
                    log.warning("skipped %s", e)
                    continue
                img = img[:1] if gray else img  # gray kept as 1 channel, expanded on use
                self.data.append((img.mul(255).round().to(torch.uint8), gray))
                kept.append((name, p))
            items = kept
        self.names = [n for n, _ in items]
        self.paths = [p for _, p in items]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def all_uint8(self) -> bool:
        """Does `get` return uint8 for every image? (Then patches travel to the GPU as uint8.)"""
        return self.data is not None

    def size(self, i: int) -> tuple[int, int]:
        return tuple(self.data[i][0].shape[-2:]) if self.data else image_size(self.paths[i])

    def get(self, i: int) -> tuple[torch.Tensor, bool]:
        """([C,H,W] uint8 with C in {1,3}, or float [3,H,W]; gray)."""
        return self.data[i] if self.data else read_image(self.paths[i])

    def with_downscaled(self, factors: Sequence[float]) -> ImageStore:
        """This store plus, per image, a copy MATLAB-bicubic downscaled by each factor (< 1).

        Scale augmentation (as VDSR trained on its 291 images at 0.6-1.0x): a downscaled photo
        has the same kinds of edges and texture at other frequencies and densities, which a
        few photos otherwise offer once. Copies are named `<name>@<factor>` and held in RAM.
        """
        if self.data is None:
            raise SrlabError("data.train_downscales needs the images in RAM: use data=samples, or "
                             "data=folder with data.cache=true")
        out = ImageStore([])
        out.names, out.paths, out.data = list(self.names), list(self.paths), list(self.data)
        for f in factors:
            for name, path, (img, gray) in zip(self.names, self.paths, self.data):
                small = imresize(img.float().div_(255)[None], scale=float(f))[0]
                out.names.append(f"{name}@{f:g}")
                out.paths.append(path)
                out.data.append((small.clamp_(0, 1).mul_(255).round_().to(torch.uint8), gray))
        return out

    def keep(self, ids: list[int]) -> ImageStore:
        out = ImageStore([])
        out.names, out.paths = [self.names[i] for i in ids], [self.paths[i] for i in ids]
        out.data = [self.data[i] for i in ids] if self.data else None
        return out


def usable(store: ImageStore, min_size: int, what: str, decode: bool = False) -> ImageStore:
    """The images of `store` that open (`decode`: that decode entirely) and are at least
    `min_size` px on their short side; one warning per skipped file, here, once per run."""
    keep = []
    for i in range(len(store)):
        try:
            size = store.get(i)[0].shape[-2:] if decode else store.size(i)
        except SrlabError as e:
            log.warning("skipped %s image: %s", what, e)
            continue
        if min(size) < min_size:
            log.warning("skipped %s image %s: %dx%d px, smaller than the %d px patch",
                        what, store.paths[i], size[1], size[0], min_size)
            continue
        keep.append(i)
    return store.keep(keep)


class PreparedImages(ImageStore):
    """Images of an `srlab-prepare` store: [C,H,W] views of memory-mapped uint8/uint16 arrays.

    Nothing is read until a patch is cut, and then only the pages it covers; the OS page
    cache holds them once for every loader worker and every DDP process on the machine.
    """

    def __init__(self, store_dir: str | Path, entries: list[dict]):
        self.store_dir, self.entries = Path(store_dir), list(entries)
        self.names = [e["name"] for e in self.entries]
        self.paths = [self.store_dir / e["file"] for e in self.entries]
        self.data = None
        self._mapped: dict[int, tuple[torch.Tensor, bool]] = {}  # opened once per process

    @property
    def all_uint8(self) -> bool:
        return all(e["dtype"] == "uint8" for e in self.entries)

    def size(self, i: int) -> tuple[int, int]:
        return int(self.entries[i]["height"]), int(self.entries[i]["width"])

    def get(self, i: int) -> tuple[torch.Tensor, bool]:
        # Mapping a file costs an open + mmap; keep it (a mapping uses address space, not RAM).
        if i not in self._mapped:
            self._mapped[i] = load_image(self.store_dir, self.entries[i])
        return self._mapped[i]

    def keep(self, ids: list[int]) -> PreparedImages:
        return PreparedImages(self.store_dir, [self.entries[i] for i in ids])


def flip_rotate(patches: tuple[torch.Tensor, ...], g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """One of the 8 flips/rotations of a square, drawn from `g`, applied to every patch alike
    (an LR patch and its HR patch stay aligned). Plain torch ops on one patch beat kornia's warps."""
    flip_h, flip_v, rot = torch.randint(2, (3,), generator=g).tolist()
    out = []
    for patch in patches:
        if flip_h:
            patch = patch.flip(-1)
        if flip_v:
            patch = patch.flip(-2)
        if rot:
            patch = patch.rot90(1, (-2, -1))
        out.append(patch)
    return tuple(out)


class TrainPatches(Dataset):
    """`length` random HR patches (and LR, given a degradation); item i from image i % n.

    Item ids may run past `length` (`EpochSampler` hands out epoch * length + i): each item
    draws its crop, flips and degradation from a generator seeded by (seed, id), so a patch
    is the same whatever process, worker or resumed run cuts it -- what makes resume exact.
    """

    def __init__(self, store: ImageStore, degradation, scale: int, patch_size: int, length: int, seed: int = 0):
        self.store, self.degradation = store, degradation
        self.scale, self.patch_size, self.length = scale, patch_size, length
        self.seed = int(seed)
        # Without a degradation (device path) HR patches travel as uint8 when all sources are
        # 8-bit, else as float32 (a batch must have one dtype; 16-bit keeps its precision).
        self.raw_uint8 = degradation is None and store.all_uint8
        self.unreadable: set[int] = set()  # per loader process: each warns once per file

    def __len__(self) -> int:
        return self.length

    def _read(self, k: int) -> tuple[int, torch.Tensor, bool]:
        """Image k, or the next readable one: a file that breaks during training (truncated,
        replaced, unmounted) is skipped with one warning per loader process, never a crash."""
        n = len(self.store)
        for step in range(n):
            j = (k + step) % n
            if j in self.unreadable:
                continue
            try:
                return (j, *self.store.get(j))
            except SrlabError as e:
                self.unreadable.add(j)
                log.warning("skipped training image (unreadable now): %s", e)
        raise SrlabError(f"no training image is readable any more (e.g. {self.store.paths[k]}); "
                         "check the data folder")

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + int(i)) % 2**63)
        k, img, gray = self._read(int(i) % self.length % len(self.store))
        p = self.patch_size
        top = int(torch.randint(img.shape[-2] - p + 1, (), generator=g))
        left = int(torch.randint(img.shape[-1] - p + 1, (), generator=g))
        (patch,) = flip_rotate((img[:, top : top + p, left : left + p],), g)
        item = {"gray": torch.tensor(gray), "name": self.store.names[k], "id": torch.tensor(int(i))}
        if self.raw_uint8:
            item["hr"] = patch.expand(3, p, p).contiguous()
        else:
            item["hr"] = to_float(patch)
            if self.degradation is not None:
                item["lr"] = self.degradation(item["hr"], generator=g)
        return item


class ValImages(Dataset):
    """Whole images cropped top-left to a multiple of `scale`; deterministic LR.

    `max_size` (optional) first takes a centred crop of at most max_size x max_size HR pixels,
    to bound validation time on big images.
    """

    def __init__(self, store: ImageStore, degradation, scale: int, seed: int = 0,
                 max_size: int | None = None):
        self.store, self.degradation, self.scale, self.seed = store, degradation, scale, seed
        self.max_size = max_size

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> dict:
        img, gray = self.store.get(i)
        if self.max_size:
            ch, cw = min(self.max_size, img.shape[-2]), min(self.max_size, img.shape[-1])
            top, left = (img.shape[-2] - ch) // 2, (img.shape[-1] - cw) // 2
            img = img[:, top : top + ch, left : left + cw]
        s = self.scale
        h, w = img.shape[-2] // s * s, img.shape[-1] // s * s
        hr = to_float(img[:, :h, :w])
        lr = self.degradation(hr, generator=torch.Generator().manual_seed(self.seed + i))
        return {"lr": lr, "hr": hr, "gray": torch.tensor(gray), "name": self.store.names[i]}


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank r gets items r, r + world, r + 2*world...: every image exactly once over all ranks.

    Lightning's default DistributedSampler pads with duplicates so ranks have equal lengths,
    which would count some validation images twice. Being a DistributedSampler subclass
    stops Lightning from replacing it.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))


class EpochSampler(DistributedSampler):
    """The training order as a function of (seed, epoch) alone, resumable mid-epoch.

    Each epoch is a permutation drawn from a generator seeded by seed + epoch (Lightning
    calls `set_epoch`), split over DDP ranks, and yielded as ids epoch * len + i so every item
    seeds its own randomness (`TrainPatches`). After a resume mid-epoch, `skip` items (the
    batches the interrupted run already trained on) are left out once, so the resumed run
    sees exactly the batches the uninterrupted one would have. Being a DistributedSampler
    keeps Lightning from replacing it under DDP.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = 0

    def __iter__(self):
        n = len(self.dataset)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        ids = torch.randperm(n, generator=g)[: self.total_size][self.rank :: self.num_replicas]
        skip, self.skip = self.skip, 0
        return iter((ids[skip:] + self.epoch * n).tolist())
