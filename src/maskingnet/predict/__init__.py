"""``maskingnet predict``: cut cars out of many photos into files, through the one inference pipeline.

Each photo goes through :func:`maskingnet.inference.run` (decoding ahead where the cores allow, the model on
batches, full resolution and the edge stage in a writer pool) into a :class:`~maskingnet.inference.FileSink`
that frames, encodes and writes every requested output atomically. The input tree is mirrored under the
output folder (:mod:`maskingnet.outputs.layout`) and ``manifest.csv`` there describes every photo
(:mod:`maskingnet.outputs.manifest`). A re-run skips photos whose outputs exist and were made by the same
model and settings (their fingerprint is in the manifest), and says in one line what changed for those it
redoes. Bad inputs get one line each and the run goes on; an output folder that cannot take files (disk full,
read-only) stops the run with one line. Under ``torchrun`` the inputs are split across ranks.

Modules: ``config`` (the options, one photo's job, the up-front checks), ``run`` (:func:`predict_files`:
inputs, skipping what is done, the pipeline), ``sinks`` (files and manifest rows; ``--listing``), ``watch``
(``--watch``), ``temps`` (a killed run's temporary files).
"""

from __future__ import annotations

from maskingnet.utils import lazy_exports

_EXPORTS = {
    "PredictConfig": "maskingnet.predict.config",
    "PredictSummary": "maskingnet.predict.config",
    "Predictor": "maskingnet.inference",
    "predict_files": "maskingnet.predict.run",
    "output_stems": "maskingnet.outputs.layout",
    "remove_stale_temps": "maskingnet.predict.temps",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
