"""LightningDataModules that turn HR images into (LR, HR) batches.

`SRDataModule` does all the work (patches, augmentation, degradation, loaders, DDP-safe
validation); subclasses only say where the HR images come from:
- `SamplesDataModule`: scikit-image's bundled photos (default `data=samples`), decoded once.
- `FolderDataModule`: a user's folder(s); read lazily per item, or all at setup with `cache`.

Batches (the LightningModule relies on this): {"lr": float [B,3,h,w], "hr": float [B,3,H,W],
"gray": bool [B], "name": list[str]}. Training: random `patch_size` HR crops (divisible by
`scale`), random flips + rot90, LR from the degradation with torch's RNG. Validation: whole
images cropped top-left to a multiple of the scale (as benchmark "modcrop" does), batch size 1,
LR from the degradation with a generator seeded by the image index (identical every epoch).
"""

from __future__ import annotations

import logging
import os

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from srlab.data.images import image_size, read_image
from srlab.data.sources import folder_split, sample_split
from srlab.errors import SrlabError

log = logging.getLogger(__name__)


class ImageStore:
    """Named HR images, read lazily from disk or decoded once into RAM (`preload`).

    Preloaded images are kept as uint8 (4x less RAM than float; 16-bit sources lose their
    extra precision) and loaded in the main process, so forked loader workers share them.
    """

    def __init__(self, items: list[tuple[str, os.PathLike]], preload: bool = False):
        self.names = [n for n, _ in items]
        self.paths = [p for _, p in items]
        self.data = None
        if preload:
            self.data = []
            for p in self.paths:
                img, gray = read_image(p)
                img = img[:1] if gray else img  # gray kept as 1 channel, expanded on use
                self.data.append((img.mul(255).round().to(torch.uint8), gray))

    def __len__(self) -> int:
        return len(self.paths)

    def size(self, i: int) -> tuple[int, int]:
        return tuple(self.data[i][0].shape[-2:]) if self.data else image_size(self.paths[i])

    def get(self, i: int) -> tuple[torch.Tensor, bool]:
        """([C,H,W] uint8 with C in {1,3}, or float [3,H,W]; gray)."""
        return self.data[i] if self.data else read_image(self.paths[i])

    def keep(self, ids: list[int]) -> ImageStore:
        out = ImageStore([])
        out.names, out.paths = [self.names[i] for i in ids], [self.paths[i] for i in ids]
        out.data = [self.data[i] for i in ids] if self.data else None
        return out


def _as_float(img: torch.Tensor) -> torch.Tensor:
    x = img.float().div_(255) if img.dtype == torch.uint8 else img.float()
    return x.expand(3, -1, -1).contiguous()


class TrainPatches(Dataset):
    """`length` random (LR, HR) patches; item i comes from image i % n_images."""

    def __init__(self, store: ImageStore, degradation, scale: int, patch_size: int, length: int):
        self.store, self.degradation = store, degradation
        self.scale, self.patch_size, self.length = scale, patch_size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        k = i % len(self.store)
        img, gray = self.store.get(k)
        p = self.patch_size
        top = int(torch.randint(img.shape[-2] - p + 1, ()))
        left = int(torch.randint(img.shape[-1] - p + 1, ()))
        patch = img[:, top : top + p, left : left + p]
        # The 8 flips/rotations of a square; plain torch ops on one patch beat kornia's warps.
        flip_h, flip_v, rot = torch.randint(2, (3,)).tolist()
        if flip_h:
            patch = patch.flip(-1)
        if flip_v:
            patch = patch.flip(-2)
        if rot:
            patch = patch.rot90(1, (-2, -1))
        hr = _as_float(patch)
        lr = self.degradation(hr)
        return {"lr": lr, "hr": hr, "gray": torch.tensor(gray), "name": self.store.names[k]}


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
        hr = _as_float(img[:, :h, :w])
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


def auto_num_workers(processes_per_machine: int = 1) -> int:
    """Loader workers per process when `num_workers` is null.

    GPU: min(8, cpus per process), or the GPU waits on data. CPU-only: the model's own threads
    need the cores. Measured on an idle 2-core box, batches of 16 x 128 px patches, scale 4,
    with a small conv net's train step (median ms/step, workers 0/1/2): bicubic 41/50/50,
    crapify 105/112/107. So 0 on <= 2 cores; above that, half the cores (capped at 4) is a guess.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_proc = max(1, (cpus or 1) // max(1, processes_per_machine))
    if torch.cuda.is_available():
        return min(8, per_proc)
    return 0 if per_proc <= 2 else min(4, per_proc // 2)


class SRDataModule(pl.LightningDataModule):
    """Base: subclasses implement `_sources()` -> (train items, val items, preload)."""

    def __init__(
        self,
        degradation,
        scale: int,
        patch_size: int = 128,
        batch_size: int = 16,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        train_repeats: int = 1,
        val_crop: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if patch_size % scale:
            raise SrlabError(f"data.patch_size={patch_size} must be a multiple of scale={scale}")
        self.degradation, self.scale, self.patch_size = degradation, int(scale), int(patch_size)
        self.batch_size, self.train_repeats = int(batch_size), int(train_repeats)
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.val_crop, self.seed = val_crop, seed
        self.train_set: TrainPatches | None = None
        self.val_set: ValImages | None = None

    def _sources(self) -> tuple[list, list, bool]:
        raise NotImplementedError

    def _world(self) -> tuple[int, int, int]:
        """(world_size, global_rank, processes on this machine); (1, 0, 1) without a trainer."""
        t = self.trainer
        if t is None:
            return 1, 0, 1
        return int(t.world_size), int(t.global_rank), int(getattr(t, "num_devices", 1) or 1)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_items, val_items, preload = self._sources()
        train = ImageStore(train_items, preload)
        small = [i for i in range(len(train)) if min(train.size(i)) < self.patch_size]
        if small:
            log.warning(
                "skipped %d of %d training images smaller than the %d px patch (e.g. %s)",
                len(small), len(train), self.patch_size, train.paths[small[0]],
            )
        if len(small) == len(train):
            raise SrlabError(
                f"no training image is at least data.patch_size={self.patch_size} px on its "
                f"short side (e.g. {train.paths[0]}); lower data.patch_size or use larger images"
            )
        train = train.keep(sorted(set(range(len(train))) - set(small)))
        val = ImageStore(val_items, preload)
        world = self._world()[0]
        if world > 1 and len(val) < world:  # else a rank gets no val batch and DDP dies in gloo/NCCL
            raise SrlabError(
                f"{len(val)} val image(s) for {world} processes: each process needs at least one (val "
                "images are never duplicated across ranks, so the means stay exact); add val images "
                "(data.val_dir, data.val_fraction) or use fewer devices"
            )
        length = max(len(train) * self.train_repeats, self.batch_size * world)
        self.train_set = TrainPatches(train, self.degradation, self.scale, self.patch_size, length)
        self.val_set = ValImages(val, self.degradation, self.scale, self.seed, self.val_crop)
        log.info("data: %d train images (%d patches/epoch), %d val images",
                 len(train), length, len(val))

    def _workers(self) -> int:
        if self.num_workers is not None:
            return int(self.num_workers)
        return auto_num_workers(self._world()[2])

    def _loader(self, ds: Dataset, workers: int, **kw) -> DataLoader:
        pin = torch.cuda.is_available() if self.pin_memory is None else bool(self.pin_memory)
        return DataLoader(
            ds, num_workers=workers, pin_memory=pin, persistent_workers=workers > 0, **kw
        )

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(
            self.train_set, self._workers(), batch_size=self.batch_size, shuffle=True,
            drop_last=True,
        )

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        world, rank, _ = self._world()
        sampler = UnpaddedDistributedSampler(self.val_set, world, rank) if world > 1 else None
        workers = min(self._workers(), len(self.val_set))
        return self._loader(self.val_set, workers, batch_size=1, shuffle=False, sampler=sampler)


class SamplesDataModule(SRDataModule):
    """scikit-image's bundled photos; `val_names` are held out for validation."""

    def __init__(self, val_names: list[str] = ("chelsea", "camera", "clock"), **kw):
        super().__init__(**kw)
        self.val_names = list(val_names)

    def _sources(self):
        train, val = sample_split(self.val_names)
        return train, val, True


class FolderDataModule(SRDataModule):
    """HR images from `train_dir` (and `val_dir`, else a hashed split; see sources.folder_split)."""

    def __init__(self, train_dir: str, val_dir: str | None = None, val_fraction: float = 0.1,
                 cache: bool = False, **kw):
        super().__init__(**kw)
        self.train_dir, self.val_dir, self.val_fraction = train_dir, val_dir, val_fraction
        self.cache = bool(cache)

    def _sources(self):
        train, val = folder_split(self.train_dir, self.val_dir, self.val_fraction)
        return train, val, self.cache
