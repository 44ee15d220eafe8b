"""Training: the thesis recipe by default, resumable to the epoch, on one CPU, one GPU or many (torchrun).

``train(TrainConfig(data=..., out=...))`` runs it and returns a summary. A run folder holds::

    config.json                     every setting, the split (car and image ids), versions
    metrics.jsonl                   one row per epoch: epoch, lr, train_loss, val_loss, val_dice,
                                    images_per_s, seconds, steps
    curves.png                      loss and val Dice per epoch, redrawn every epoch
    checkpoints/last.safetensors    weights after the latest epoch (``maskingnet.load_model`` reads it)
    checkpoints/best.safetensors    weights of the epoch with the best val Dice
    checkpoints/last.state.pt       weights, optimizer, scheduler, scaler, epoch, RNG and metrics history;
                                    ``torch.load(weights_only=True)`` reads it

The parts, each in its own module:

- :mod:`.config`: :class:`TrainConfig` and :class:`TrainError` (no torch: the CLI's help reads the defaults);
- :mod:`.split`: the photos, the train/val split and the training size;
- :mod:`.network`: the network and its first weights (seeded, ``--init-from``, ``--vgg-weights``);
- :mod:`.loaders`: the data loaders, reseeded per epoch;
- :mod:`.loop`: :class:`EpochLoop`, one epoch of training and validation (precision, DDP, NaN stop);
- :mod:`.state`: the resumable state (``last.state.pt``: progress, optimizer, RNG) and why resume is exact;
- :mod:`.run_folder`: :class:`RunFolder`, the files above and the checks that keep them from being
  overwritten;
- :mod:`.trainer`: :class:`Trainer`, which puts them together, and :func:`train`.

Names are imported lazily, so that importing :mod:`maskingnet.train.config` does not pull in torch.
"""

from __future__ import annotations

from maskingnet.utils import lazy_exports

_EXPORTS = {
    "LOSSES": "config",
    "PRECISIONS": "config",
    "RESUMABLE_OVERRIDES": "config",
    "SPLITS": "config",
    "NonFiniteLossError": "config",
    "TrainConfig": "config",
    "TrainError": "config",
    "read_run_config": "config",
    "Split": "split",
    "make_split": "split",
    "recorded_split": "split",
    "scaled_size": "split",
    "scan_records": "split",
    "carried_refiner": "network",
    "describe_config": "network",
    "init_from_defaults": "network",
    "EpochData": "loaders",
    "EpochLoop": "loop",
    "EpochResult": "loop",
    "autocast_dtype": "loop",
    "make_loss": "loop",
    "resolve_train_precision": "loop",
    "STATE_FILE": "state",
    "Optimization": "state",
    "ResumableState": "state",
    "RunProgress": "state",
    "epoch_seed": "state",
    "rng_state": "state",
    "seed_everything": "state",
    "set_rng_state": "state",
    "RunFolder": "run_folder",
    "versions": "run_folder",
    "Trainer": "trainer",
    "train": "trainer",
    "training_device": "trainer",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"{__name__}.{module}" for name, module in _EXPORTS.items()}
)
