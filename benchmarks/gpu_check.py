"""The CUDA paths CI never runs, and the GPU timing table, in one command: ``make gpu-check``.

``python benchmarks/gpu_check.py [--out runs/gpu-check] [--quick] [--skip-bench]`` runs on a rented GPU box:

- training steps through ``maskingnet train`` on a synthetic set: AMP bf16, AMP fp16 (GradScaler),
  bf16 + ``--channels-last``, bf16 + ``--compile``, and DDP with NCCL over every GPU present (``torchrun``;
  skipped with fewer than two);
- ``predict`` (bf16 and fp16), ``evaluate``, ``submit`` and ``serve`` (one upload over HTTP) on CUDA with
  the bundled model, the CUDA masks compared with the CPU's (Dice);
- ``predict`` through ONNX Runtime's CUDA provider, when the installed onnxruntime has it;
- the thesis's six-network table at 512x512 batch 4 (train and test ms/image, fp32), beside the thesis's
  1080Ti figures (``maskingnet.bench``).

Writes ``OUT/gpu_check.json`` (every check: ok, seconds, what failed; the table) and ``OUT/gpu_check.md``.
Exit status 0 when every check passed, 1 otherwise. Without a usable CUDA GPU it says why, writes that to
the JSON and exits 0 having checked nothing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskingnet import __version__
from maskingnet.errors import MaskingnetError
from maskingnet.runtime import resolve_device

MASKINGNET = [sys.executable, "-m", "maskingnet"]
TINY_TRAIN = [
    "--width",
    "0.125",
    "--size",
    "128",
    "--epochs",
    "1",
    "--max-steps",
    "3",
    "--workers",
    "0",
    "--no-progress",
]
STEP_TIMEOUT_S = 900
MIN_AGREEMENT = 0.99


@dataclass
class Check:
    """One check's outcome: ``ok`` None when skipped (``detail`` says why)."""

    name: str
    ok: bool | None
    seconds: float = 0.0
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def gpu_problem() -> str | None:
    """Why CUDA cannot be used here, or None."""
    try:
        resolve_device("cuda")
    except MaskingnetError as error:
        return str(error).removeprefix("--device cuda: ")
    return None


def environment() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "maskingnet": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda_build": torch.version.cuda,
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cudnn"] = torch.backends.cudnn.version()
        info["bf16"] = bool(torch.cuda.is_bf16_supported())
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    return info


def run(command: list[str], timeout: float = STEP_TIMEOUT_S, **kwargs: Any) -> subprocess.CompletedProcess:
    """``command`` with its output captured; a failure raises with its last lines."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        said = [line for line in lines if re.match(r"[a-z-]+: ", line)]  # maskingnet's one-line errors
        tail = "\n".join(dict.fromkeys(said[:3] + lines[-8:]))
        raise RuntimeError(f"exit {done.returncode}: {' '.join(command[2:])}\n{tail}")
    return done


def timed(name: str, action: Callable[[], dict[str, Any] | None]) -> Check:
    """Run one check; an exception is a failed check, not the end of the run."""
    started = time.perf_counter()
    try:
        data = action() or {}
    except Exception as error:  # noqa: BLE001 - every failure is reported and the other checks go on
        check = Check(name, False, time.perf_counter() - started, str(error)[-2000:])
    else:
        check = Check(name, True, time.perf_counter() - started, data=data)
    print(f"[gpu-check] {name}: {verdict(check)} ({check.seconds:.1f} s)", file=sys.stderr, flush=True)
    return check


def verdict(check: Check) -> str:
    return "skipped" if check.ok is None else "ok" if check.ok else "FAILED: " + check.detail.splitlines()[0]


def skipped(name: str, why: str) -> Check:
    print(f"[gpu-check] {name}: skipped ({why})", file=sys.stderr, flush=True)
    return Check(name, None, detail=why)


# ------------------------------------------------------------------------------------------------- checks


def train_check(data: Path, out: Path, device: str, *options: str) -> Callable[[], dict[str, Any]]:
    def action() -> dict[str, Any]:
        command = [*MASKINGNET, "train", "--data", str(data), "--out", str(out), *TINY_TRAIN]
        done = run([*command, "--device", device, *options])
        record = json.loads((out / "config.json").read_text())
        losses = [json.loads(line)["train_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        if not all(np.isfinite(losses)):
            raise RuntimeError(f"non-finite loss {losses}")
        start = next((line for line in done.stderr.splitlines() if line.startswith("training ")), "")
        return {"device": record["device"], "precision": record["precision"], "loss": losses, "start": start}

    return action


def ddp_check(data: Path, out: Path, gpus: int) -> Callable[[], dict[str, Any]]:
    def action() -> dict[str, Any]:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}"]
        run([*launch, "-m", "maskingnet", "train", "--data", str(data), "--out", str(out), *TINY_TRAIN])
        record = json.loads((out / "config.json").read_text())
        if record["world_size"] != gpus or not record["device"].startswith("cuda"):
            ran = f"world size {record['world_size']} on {record['device']}"
            raise RuntimeError(f"{ran}, expected {gpus} GPUs")
        return {"world_size": record["world_size"], "device": record["device"]}

    return action


def mask_agreement(ours: Path, reference: Path) -> float:
    """The lowest Dice between the masks of two ``predict`` output folders (same names)."""
    scores = []
    for path in sorted(reference.rglob("*_mask.png")) or sorted(reference.rglob("*.png")):
        a = np.asarray(Image.open(path)) > 127
        b = np.asarray(Image.open(ours / path.relative_to(reference))) > 127
        scores.append(2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1))
    if not scores:
        raise RuntimeError(f"{reference}: no masks to compare")
    return float(min(scores))


def predict_check(photos: Path, out: Path, cpu_masks: Path, *options: str) -> Callable[[], dict[str, Any]]:
    def action() -> dict[str, Any]:
        run(
            [
                *MASKINGNET,
                "predict",
                str(photos),
                "--out",
                str(out),
                "--save",
                "mask",
                "--no-progress",
                *options,
            ]
        )
        lowest = mask_agreement(out, cpu_masks)
        if lowest < MIN_AGREEMENT:
            raise RuntimeError(f"mask Dice with the CPU's {lowest:.5f} < {MIN_AGREEMENT}")
        return {"min_dice_vs_cpu": round(lowest, 5)}

    return action


def evaluate_check(data: Path, out: Path, device: str) -> Callable[[], dict[str, Any]]:
    def action() -> dict[str, Any]:
        done = run(
            [
                *MASKINGNET,
                "evaluate",
                "--data",
                str(data),
                "--split",
                "all",
                "--out",
                str(out),
                "--no-progress",
                "--device",
                device,
            ]
        )
        return {"line": done.stdout.strip().splitlines()[-1]}

    return action


def submit_check(test_dir: Path, out: Path, device: str) -> Callable[[], dict[str, Any]]:
    def action() -> dict[str, Any]:
        run([*MASKINGNET, "submit", str(test_dir), "--out", str(out), "--no-progress", "--device", device])
        with gzip.open(out, "rt") as rows:
            return {"rows": sum(1 for _ in rows) - 1}

    return action


def serve_check(photo: Path, log: Path, device: str) -> Callable[[], dict[str, Any]]:
    def action() -> dict[str, Any]:
        with log.open("wb") as handle:
            command = [*MASKINGNET, "serve", "--port", "0", "--device", device]
            server = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        try:
            address = f"http://127.0.0.1:{wait_for_port(server, log)}"
            with urllib.request.urlopen(f"{address}/v1/model", timeout=60) as answer:
                model = json.load(answer)
            headers = {"Content-Type": "image/jpeg"}
            upload = urllib.request.Request(f"{address}/v1/mask", data=photo.read_bytes(), headers=headers)
            with urllib.request.urlopen(upload, timeout=120) as answer:
                png = answer.read()
        finally:
            server.terminate()
            server.wait(timeout=30)
        if not str(model["device"]).startswith(device):
            raise RuntimeError(f"served on {model['device']}, not {device}")
        return {"device": model["device"], "precision": model["precision"], "png_bytes": len(png)}

    return action


def wait_for_port(server: subprocess.Popen, log: Path, limit_s: float = 300) -> int:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and server.poll() is None:
        text = log.read_text(errors="replace")
        if "serving" in text and "http://" in text:
            port = int(text.split("http://", 1)[1].split()[0].rsplit(":", 1)[1])
            time.sleep(1)
            return port
        time.sleep(0.3)
    raise RuntimeError(f"serve did not start: {log.read_text(errors='replace')[-1000:]}")


def onnx_cuda_check(photos: Path, root: Path, cpu_masks: Path, device: str) -> Check:
    name = "predict, ONNX Runtime CUDA provider"
    try:
        import onnxruntime
    except ImportError:
        return skipped(name, "onnxruntime is not installed")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return skipped(name, "this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    model = root / "model.onnx"

    def action() -> dict[str, Any]:
        run([*MASKINGNET, "export", "--out", str(model)])
        return predict_check(photos, root / "onnx", cpu_masks, "-m", str(model), "--device", device)()

    return timed(name, action)


def bench_table(device: str, quick: bool) -> dict[str, Any]:
    """The six networks at 512x512 batch 4, fp32, train and test ms/image, with the thesis's figures."""
    import torch

    from maskingnet.bench.networks import bench_models
    from maskingnet.bench.timing import BenchConfig, make_plan

    config = BenchConfig(device=device, size=512, batch=4, repeats=3 if quick else 10, progress=False)
    plan = make_plan(config)
    rows = bench_models(config, plan)
    gpu = torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else "CPU"
    return {
        "gpu": gpu,
        "size": plan.size,
        "batch": plan.batch,
        "repeats": plan.repeats,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "rows": rows,
    }


def train_checks(data: Path, root: Path, device: str) -> list[Check]:
    import torch

    checks = [
        timed("train, AMP bf16", train_check(data, root / "train-bf16", device, "--precision", "bf16")),
        timed(
            "train, AMP fp16 + GradScaler",
            train_check(data, root / "train-fp16", device, "--precision", "fp16"),
        ),
        timed(
            "train, auto precision + channels_last",
            train_check(data, root / "train-cl", device, "--channels-last"),
        ),
        timed(
            "train, auto precision + torch.compile",
            train_check(data, root / "train-compile", device, "--compile"),
        ),
    ]
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if gpus >= 2:
        checks.append(timed(f"train, DDP over {gpus} GPUs (NCCL)", ddp_check(data, root / "train-ddp", gpus)))
    else:
        checks.append(skipped("train, DDP (NCCL)", f"needs 2 GPUs, {gpus} present"))
    return checks


def run_checks(root: Path, device: str, quick: bool, skip_bench: bool) -> list[Check]:
    """Every check on ``device`` (``cuda``; ``cpu`` only to rehearse this script's own plumbing)."""
    data, cpu_masks = root / "data", root / "predict-cpu"
    run([*MASKINGNET, "synth", "--out", str(data), "--cars", "3", "--test-cars", "1", "--size", "480x320"])
    photos = data / "test"
    checks = train_checks(data, root, device)
    run(
        [
            *MASKINGNET,
            "predict",
            str(photos),
            "--out",
            str(cpu_masks),
            "--save",
            "mask",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    checks += [
        timed(
            "predict, auto precision",
            predict_check(photos, root / "predict-auto", cpu_masks, "--device", device),
        ),
        timed(
            "predict, fp16",
            predict_check(
                photos, root / "predict-fp16", cpu_masks, "--device", device, "--precision", "fp16"
            ),
        ),
        timed("evaluate", evaluate_check(data, root / "evaluate", device)),
        timed("submit", submit_check(photos, root / "submission.csv.gz", device)),
        timed("serve", serve_check(sorted(photos.glob("*.jpg"))[0], root / "serve.log", device)),
        onnx_cuda_check(photos, root, cpu_masks, device),
    ]
    bench = "bench: six networks at 512x512 batch 4"
    if skip_bench:
        checks.append(skipped(bench, "--skip-bench"))
    else:
        checks.append(timed(bench, lambda: bench_table(device, quick)))
    return checks


# ------------------------------------------------------------------------------------------------ report


def bench_markdown(table: dict[str, Any]) -> list[str]:
    lines = [
        f"| model ({table['gpu']}, {table['size']}x{table['size']}, batch {table['batch']}, fp32) "
        "| train ms/img | thesis 1080Ti | test ms/img | thesis 1080Ti |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in table["rows"]:
        lines.append(
            f"| `{row['name']}` | {row['train_ms_per_image']:.1f} | {row['thesis_train_ms']} "
            f"| {row['test_ms_per_image']:.1f} | {row['thesis_test_ms']} |"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# GPU check, {result['when']}", "", f"`{json.dumps(result['environment'])}`", ""]
    if "reason" in result:
        return "\n".join(lines + [f"No CUDA GPU: {result['reason']}. Nothing was checked.", ""])
    if not result["gpu"]:
        lines += ["**A rehearsal on the CPU: these results say nothing about CUDA.**", ""]
    lines += ["| check | result | s |", "|---|---|---:|"]
    lines += [f"| {c['name']} | {verdict(Check(**c))} | {c['seconds']:.1f} |" for c in result["checks"]]
    bench = next((c["data"] for c in result["checks"] if c["name"].startswith("bench") and c["ok"]), None)
    return "\n".join(lines + ([""] + bench_markdown(bench) if bench else []) + [""])


def write(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"), help="folder for the results")
    parser.add_argument("--quick", action="store_true", help="fewer timed runs in the bench table")
    parser.add_argument("--skip-bench", action="store_true", help="only the CUDA paths, no timing table")
    parser.add_argument(
        "--rehearse-on-cpu",
        action="store_true",
        help="run the same commands on the CPU to test this script (says nothing of CUDA)",
    )
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "environment": environment(),
        "gpu": False,
        "checks": [],
    }
    problem = None if args.rehearse_on_cpu else gpu_problem()
    if problem:
        result["reason"] = problem
        write(args.out, result)
        print(f"gpu-check: no CUDA GPU ({problem}); nothing checked -> {args.out / 'gpu_check.json'}")
        return 0
    device = "cpu" if args.rehearse_on_cpu else "cuda"
    result["gpu"], result["device"] = not args.rehearse_on_cpu, device
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        checks = run_checks(Path(scratch), device, args.quick, args.skip_bench)
    result["checks"] = [asdict(check) for check in checks]
    write(args.out, result)
    failed = [check.name for check in checks if check.ok is False]
    print((args.out / "gpu_check.md").read_text())
    summary = f"gpu-check on {device}: {len(checks) - len(failed)} of {len(checks)} passed or skipped"
    summary += (f"; FAILED: {', '.join(failed)}" if failed else "") + f" -> {args.out / 'gpu_check.json'}"
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
