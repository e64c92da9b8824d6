"""LightningDataModules that turn HR images into (LR, HR) batches.

`SRDataModule` does all the work (patches, augmentation, degradation, loaders, DDP-safe
validation); subclasses only say where the HR images come from:
- `SamplesDataModule`: scikit-image's bundled photos (default `data=samples`), decoded once.
- `FolderDataModule`: a user's folder(s); read lazily per item, or all at setup with `cache`.
- `StoreDataModule`: a store written once by `srlab-prepare`, memory-mapped (`data=store`).

Batches (the LightningModule relies on this): {"lr": float [B,3,h,w], "hr": float [B,3,H,W],
"gray": bool [B], "name": list[str]}. Training: random `patch_size` HR crops (divisible by
`scale`), random flips + rot90. Validation: whole images cropped top-left to a multiple of the
scale (as benchmark "modcrop" does), batch size 1, LR from the degradation with a generator
seeded by the image index (identical every epoch).

Where training LR is made (`degrade_on`): "device" (default) ships HR patches (uint8 when the
sources are 8-bit) and degrades the whole batch after it reached the GPU, in
`on_after_batch_transfer`; "loader" degrades patch by patch in the loader workers. Both give
the same LR (tests/test_data.py); per-patch MATLAB bicubic on CPU workers was what starved a
GPU (issue 8). Validation LR is always made in the loader: it is seeded per image.
A degradation with a `train_batch(batch, gray, generator)` method (realesrgan) gets the whole
training batch instead and may also replace its HR (sharpened targets) and mix pairs across
batches (its pool); it needs `degrade_on=device`.
"""

from __future__ import annotations

import logging
import os
import warnings

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from srlab.data.datasets import (
    EpochSampler,
    ImageStore,
    PreparedImages,
    TrainPatches,
    UnpaddedDistributedSampler,
    ValImages,
    usable,
)
from srlab.data.degrade import NoDegradation
from srlab.data.sources import folder_items, folder_split, hashed_split, sample_split
from srlab.errors import SrlabError

log = logging.getLogger(__name__)

DEGRADE_ON = ("device", "loader")


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
    """Base: subclasses implement `_stores()` -> (train ImageStore, val ImageStore)."""

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
        degrade_on: str = "device",
        train_downscales: list[float] | None = None,
    ):
        super().__init__()
        if patch_size % scale:
            raise SrlabError(f"data.patch_size={patch_size} must be a multiple of scale={scale}")
        if isinstance(degradation, NoDegradation):
            raise SrlabError(f"degradation=none needs LR files: use data=paired (this data source, "
                             f"{type(self).__name__}, makes its LR from the HR), or pick a degradation")
        if degrade_on not in DEGRADE_ON:
            raise SrlabError(f"data.degrade_on={degrade_on!r}: use one of {', '.join(DEGRADE_ON)}")
        self.degradation, self.scale, self.patch_size = degradation, int(scale), int(patch_size)
        self.batch_size, self.train_repeats = int(batch_size), int(train_repeats)
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.val_crop, self.seed, self.degrade_on = val_crop, seed, degrade_on
        self.train_downscales = [float(f) for f in train_downscales or ()]
        bad = [f for f in self.train_downscales if not 0 < f < 1]
        if bad:
            raise SrlabError(f"data.train_downscales={list(train_downscales)}: each factor must be in (0, 1), "
                             "e.g. [0.8, 0.6]")
        self.train_set: TrainPatches | None = None
        self.val_set: ValImages | None = None

    def _stores(self) -> tuple[ImageStore, ImageStore]:
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
        train, val = self._stores()
        if self.train_downscales:  # scale augmentation: smaller copies of every training image
            train = train.with_downscaled(self.train_downscales)
        n_train = len(train)
        train = usable(train, self.patch_size, "training")
        if len(train) == 0:
            raise SrlabError(
                f"none of the {n_train} training image(s) is usable: each is unreadable or smaller "
                f"than data.patch_size={self.patch_size} px (see the warnings above); lower "
                "data.patch_size or fix the images"
            )
        # Val images are decoded here once (they are few): a broken one is skipped now, not
        # met at every validation; val needs at least 1 px more than nothing: the scale.
        val = usable(val, self.scale, "val", decode=True)
        if len(val) == 0:
            raise SrlabError("no usable val image (see the warnings above): fix them or set data.val_dir")
        world = self._world()[0]
        if world > 1 and len(val) < world:  # else a rank gets no val batch and DDP dies in gloo/NCCL
            raise SrlabError(
                f"{len(val)} val image(s) for {world} processes: each process needs at least one (val "
                "images are never duplicated across ranks, so the means stay exact); add val images "
                "(data.val_dir, data.val_fraction) or use fewer devices"
            )
        length = max(len(train) * self.train_repeats, self.batch_size * world)
        on_loader = self.degrade_on == "loader"
        if on_loader and hasattr(self.degradation, "train_batch"):
            raise SrlabError(f"{type(self.degradation).__name__} works on whole batches (pair pool, sharpened "
                             "HR): use data.degrade_on=device (it runs on the CPU too)")
        self.train_set = TrainPatches(train, self.degradation if on_loader else None,
                                      self.scale, self.patch_size, length, seed=self.seed)
        self.val_set = ValImages(val, self.degradation, self.scale, self.seed, self.val_crop)
        log.info("data: %d train images (%d patches/epoch), %d val images, LR made on the %s",
                 len(train), length, len(val), self.degrade_on)

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        """Tensors to the device without waiting (pinned memory); names and flags stay.

        Lightning's generic transfer walks every element of every list (the 16 names) each
        step; this is one `.to` per tensor. `gray_cpu` stays on the CPU for the degradation.
        """
        out = {}
        for key, value in batch.items():
            move = torch.is_tensor(value) and key not in ("gray_cpu", "id")
            out[key] = value.to(device, non_blocking=True) if move else value
        if "lr" not in batch:
            out["gray_cpu"] = batch["gray"]
        return out

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Training batches of HR patches (uint8 or float) get their LR here, on the device."""
        if "lr" in batch:
            return batch
        hr = batch["hr"]
        hr = hr.float().div_(255) if hr.dtype == torch.uint8 else hr.float()
        gray = batch.pop("gray_cpu", None)
        # the batch's draws (blur, noise, JPEG...) seeded by its first item's id: the same on a
        # resumed run, on any rank or worker count, whatever was drawn before
        ids = batch.pop("id", None)
        first = int(ids[0]) if ids is not None and len(ids) else 0
        generator = torch.Generator().manual_seed((1000003 * (self.seed + 1) + first) % 2**63)
        batch["hr"] = hr
        if hasattr(self.degradation, "train_batch"):  # also changes the targets / mixes batches (realesrgan)
            return self.degradation.train_batch(batch, gray, generator)
        batch["lr"] = self.degradation.batch(hr, gray=gray, generator=generator)
        return batch

    def _workers(self) -> int:
        if self.num_workers is not None:
            return int(self.num_workers)
        return auto_num_workers(self._world()[2])

    def _loader(self, ds: Dataset, workers: int, **kw) -> DataLoader:
        pin = torch.cuda.is_available() if self.pin_memory is None else bool(self.pin_memory)
        # its own generator: creating an iterator must not draw from the global RNG, which a
        # resumed run restores exactly (srlab/approaches/base.py)
        return DataLoader(
            ds, num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(self.seed), **kw
        )

    # EpochSampler resumes mid-epoch itself; Lightning cannot tell and would warn otherwise
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        world, rank, _ = self._world()
        sampler = EpochSampler(self.train_set, world, rank, self.seed)
        # Lightning asks for the loader after restoring a checkpoint: a run resumed mid-epoch
        # skips the batches it already trained on (the loop counts on from there)
        if self.trainer is not None and self.trainer.state.fn == "fit":
            done = self.trainer.fit_loop.epoch_loop.batch_progress.current.completed
            sampler.skip = done * self.batch_size
        return self._loader(self.train_set, self._workers(), batch_size=self.batch_size, sampler=sampler,
                            drop_last=True)

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        world, rank, _ = self._world()
        sampler = UnpaddedDistributedSampler(self.val_set, world, rank) if world > 1 else None
        workers = min(self._workers(), len(self.val_set))
        return self._loader(self.val_set, workers, batch_size=1, shuffle=False, sampler=sampler)


class SamplesDataModule(SRDataModule):
    """scikit-image's bundled photos; `val_names` are held out for validation."""

    def __init__(self, val_names: list[str] = ("chelsea", "camera", "coins"), **kw):
        super().__init__(**kw)
        self.val_names = list(val_names)

    def _stores(self):
        train, val = sample_split(self.val_names)
        return ImageStore(train, preload=True), ImageStore(val, preload=True)


class FolderDataModule(SRDataModule):
    """HR images from `train_dir` (and `val_dir`, else a hashed split; see sources.folder_split)."""

    def __init__(self, train_dir: str, val_dir: str | None = None, val_fraction: float = 0.1,
                 cache: bool = False, **kw):
        super().__init__(**kw)
        self.train_dir, self.val_dir, self.val_fraction = train_dir, val_dir, val_fraction
        self.cache = bool(cache)

    def _stores(self):
        train, val = folder_split(self.train_dir, self.val_dir, self.val_fraction)
        train = ImageStore(train, self.cache)
        sizes = []
        for i in range(min(3, len(train))):  # a look at the first few headers; broken ones: later
            try:
                sizes.append(train.size(i))
            except SrlabError:
                pass
        if not self.cache and sizes:
            h, w = max(sizes)
            if h * w > 16 * self.patch_size**2:  # e.g. DIV2K: 75x the pixels of a 192 px patch
                log.warning(
                    "data=folder decodes a whole %dx%d image for every %d px patch; to keep a GPU "
                    "busy convert once (srlab-prepare input=%s output=<store dir>) and train with "
                    "data=store data.train_dir=<store dir>", w, h, self.patch_size, self.train_dir)
        return train, ImageStore(val, self.cache)


class StoreDataModule(SRDataModule):
    """Training images from an `srlab-prepare` store (memory-mapped); val as `data=folder`:
    all of `val_dir` (a folder of images or another store), else a hashed split of the store."""

    def __init__(self, train_dir: str, val_dir: str | None = None, val_fraction: float = 0.1, **kw):
        super().__init__(**kw)
        self.train_dir, self.val_dir, self.val_fraction = train_dir, val_dir, val_fraction

    def _stores(self):
        from srlab.data.prepared import is_store, open_store

        entries = open_store(self.train_dir)
        if self.val_dir is not None:
            val = (PreparedImages(self.val_dir, open_store(self.val_dir)) if is_store(self.val_dir)
                   else ImageStore(folder_items(self.val_dir, "data.val_dir")))
            return PreparedImages(self.train_dir, entries), val
        train_ids, val_ids = hashed_split([e["name"] for e in entries], self.val_fraction,
                                          what=f"data.train_dir: store {self.train_dir}")
        store = PreparedImages(self.train_dir, entries)
        return store.keep(train_ids), store.keep(val_ids)
