"""``maskingnet bench``: the project's speed and agreement benchmarks, measured side by side in one run.

Writes ``OUT/bench.json`` and ``OUT/bench.md`` with these sections:

- ``machine``: CPU model, cores, threads, torch version, device, precision support, load average.
- ``models``: the six networks' parameters, GFLOPs at 512x512, train and test ms/image (the thesis's two
  timing columns), each as a ratio to U-Net beside the thesis's 1080Ti ratio.
- ``peak``: this machine's own conv throughput (GFLOP/s), fp32 and bf16, channels-last.
- ``fast_path``: MaskingNet at 512x512, the naive fp32 eager NCHW model vs the fast path ``predict`` uses;
  the masks of both on real photos are compared (Dice).
- ``utilization``: achieved GFLOP/s of each path over the same-precision peak.
- ``pipeline``: end-to-end ``predict`` with the bundled model and its edge stage on real 1918x1280 JPEGs
  against each stage alone and the bound the cores set (``maskingnet.bench.pipeline``).
- ``int8``: the bundled model's network in fp32, bf16 and int8 side by side, and int8's mask agreement
  with fp32 on real photos (``maskingnet.bench.default_model.bench_int8``).
- ``output_stage``: mask and cut-out from the probabilities, rendered and written, with and without soft
  edges, against the render path of commit 174ee64 (``maskingnet.bench.outputs``): speed-ups, cut-outs/s.
- ``rle``: Kaggle RLE encode/decode of a 1918x1280 mask (``maskingnet.bench.rle``).
- ``peer``: rembg (``rembg p -m u2netp``) and IMG.LY's IS-Net against ``maskingnet predict`` on the
  model's held-out photos: Dice and the time per photo of each as a whole process
  (``maskingnet.bench.peer``; skipped with one line when rembg is not installed: ``make peer``).

Timings are the best of a few runs (the least disturbed by other work on the machine); on a shared
machine they are contended, which is why every comparison is a ratio measured in the same run.

Modules: ``timing`` (options, timing harness, machine and conv peak), ``networks`` (the six networks),
``fastpath``, ``default_model``, ``pipeline``, ``outputs``, ``rle``, ``peer``, ``report`` (runs the sections
and writes the report); ``ablation`` is ``maskingnet ablation``.
"""

from __future__ import annotations

from maskingnet.utils import lazy_exports

_EXPORTS = {
    "BenchConfig": "maskingnet.bench.timing",
    "run_bench": "maskingnet.bench.report",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
