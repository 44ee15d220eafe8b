"""``maskingnet predict --watch``: keep cutting out the photos that arrive in the input folders.

Every ``interval`` seconds the inputs are listed (names, sizes and modification times only); when something
changed and then stayed the same for one more look (a copy in progress is not read half-written), a normal
predict run goes over them with the model kept loaded: it does only the new or changed photos, writes
atomically and keeps the same ``manifest.csv``. Ctrl-C ends it (the verb's one line, as for ``predict``).
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable

from maskingnet.errors import MaskingnetError
from maskingnet.predict.config import PredictConfig, PredictSummary
from maskingnet.predict.run import predict_files, say

DEFAULT_INTERVAL_S = 2.0
Snapshot = dict[str, tuple[int, int]]


def snapshot(config: PredictConfig) -> Snapshot:
    """``{path: (size, mtime_ns)}`` of every file among the inputs, the output folder left out."""
    out = os.path.abspath(config.out)
    found: Snapshot = {}
    for item in config.inputs:
        text = os.fspath(item)
        paths = glob.glob(text) if glob.has_magic(text) else [text]
        for path in paths:
            if os.path.isdir(path):
                for folder, dirs, files in os.walk(path, followlinks=True):
                    if os.path.abspath(folder).startswith(out):
                        dirs[:] = []
                        continue
                    if not config.recursive:
                        dirs[:] = []
                    for name in files:
                        _add(found, os.path.join(folder, name))
            else:
                _add(found, path)
    return found


def _add(found: Snapshot, path: str) -> None:
    try:
        stat = os.stat(path)
    except OSError:
        return
    found[path] = (stat.st_size, stat.st_mtime_ns)


def watch(
    config: PredictConfig,
    report: Callable[[str], None] = say,
    interval: float = DEFAULT_INTERVAL_S,
    should_stop: Callable[[], bool] = lambda: False,
    on_round: Callable[[PredictSummary], None] | None = None,
) -> PredictSummary:
    """Predict the inputs now and whenever they change, until ``should_stop()``; returns the totals.
    ``on_round`` gets each round's summary (a round with new photos)."""
    predictor = None
    total = PredictSummary()
    done_for: Snapshot | None = None
    last = snapshot(config)
    while True:
        if last != done_for:
            if predictor is None and last:
                from maskingnet.inference import rank_predictor

                predictor = rank_predictor(config.model, config.batch_size)
            summary = _round(config, report, predictor)
            done_for = last
            if summary is not None:
                _add_up(total, summary)
                if on_round is not None and (summary.done or summary.failed):
                    on_round(summary)
        if should_stop():
            return total
        time.sleep(interval)
        current = snapshot(config)
        while current != last and not should_stop():  # changing: wait until it holds still
            last = current
            time.sleep(interval)
            current = snapshot(config)


def _round(config: PredictConfig, report: Callable[[str], None], predictor) -> PredictSummary | None:
    try:
        return predict_files(config, report, predictor)
    except MaskingnetError as error:  # nothing to do yet (an empty folder): wait for photos
        report(f"{error}; watching")
        return None


def _add_up(total: PredictSummary, summary: PredictSummary) -> None:
    total.done += summary.done
    total.failed += summary.failed
    total.problems += summary.problems
    total.review += summary.review
    total.seconds += summary.seconds
