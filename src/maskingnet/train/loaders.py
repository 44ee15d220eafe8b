"""The data loaders of one training process, reseeded at every epoch from ``(seed, epoch, rank)`` alone."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from maskingnet.data.cache import SampleCache
from maskingnet.data.carvana import SegmentationDataset
from maskingnet.runtime import DistContext, default_workers

from .config import TrainConfig
from .split import Split
from .state import epoch_seed, seed_everything


class EpochData:
    """This rank's shard of the training photos (random crops, augmentation) and of the validation photos
    (whole, unaugmented)."""

    def __init__(
        self,
        split: Split,
        config: TrainConfig,
        ctx: DistContext,
        device: torch.device,
        cache: SampleCache | None = None,
    ) -> None:
        self.seed, self.rank = config.seed, ctx.rank
        workers = default_workers(ctx.world_size) if config.workers is None else config.workers
        self.train_set = SegmentationDataset(
            split.train,
            size=config.size,
            augment=config.augment,
            seed=config.seed,
            crop=config.crop,
            random_crop=True,
            cache=cache,
        )
        val_set = SegmentationDataset(
            split.val, size=config.size, augment=False, seed=config.seed, cache=cache
        )
        self.sampler = DistributedSampler(
            self.train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
        )
        self.generator = torch.Generator()
        common = {"num_workers": workers, "pin_memory": device.type == "cuda"}
        self.train = DataLoader(
            self.train_set,
            batch_size=config.batch_size,
            sampler=self.sampler,
            generator=self.generator,
            **common,
        )
        # Validation is sharded without padding so every image counts exactly once after the all-reduce.
        shard = Subset(val_set, list(range(ctx.rank, len(val_set), ctx.world_size)))
        self.val = DataLoader(shard, batch_size=config.batch_size, shuffle=False, **common)

    def start_epoch(self, epoch: int) -> None:
        """Seed every RNG, the loader's and the sampler's for ``epoch``: its randomness depends on nothing
        that came before."""
        seed = epoch_seed(self.seed, epoch, self.rank)
        seed_everything(seed)
        self.generator.manual_seed(seed)
        self.sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
