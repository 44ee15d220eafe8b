"""The web application: the endpoints, each request's way through upload, batcher and picture."""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from maskingnet.runtime import writer_threads
from maskingnet.serve.batcher import MicroBatcher, Overloaded, PixelBudget
from maskingnet.serve.config import CONFIG_ENV, SERVE_EXTRA_HINT, ServeConfig, ServeError
from maskingnet.serve.page import PAGE
from maskingnet.serve.uploads import (
    RequestError,
    decode_for_model,
    read_upload,
    request_options,
    upload_pixels,
)


def model_summary(predictor, config: ServeConfig) -> dict[str, Any]:
    """What ``GET /v1/model`` reports about the loaded model."""
    from maskingnet.inference import OnnxBackend
    from maskingnet.models import count_params

    backend = predictor.backend
    model_config = getattr(backend, "config", None)
    return {
        "name": getattr(model_config, "name", None) or Path(config.model.checkpoint).stem,
        "params": count_params(model_config),
        "size": list(predictor.size),
        # the server's folders are none of a client's business
        "checkpoint": Path(config.model.checkpoint).name,
        "backend": "onnxruntime" if isinstance(backend, OnnxBackend) else "torch",
        "device": str(backend.device),
        "precision": backend.precision,
        "class_names": list(backend.spec.class_names),
        "meta": getattr(backend, "meta", {}) or {},
        "max_upload_mb": config.max_upload_mb,
        "limits": config.limits(),
        "batching": {
            "max_batch": config.max_batch,
            "max_wait_ms": config.max_wait_ms,
            "queue_size": config.queue_size,
        },
    }


def rss_mb() -> float | None:
    """This process's resident memory in MB (Linux), for /healthz."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


MEDIA_TYPES = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg"}


def render_answer(picture: str, photo, probs: np.ndarray, options) -> bytes:
    """The answer's bytes through the one picture path (the bytes ``predict`` writes for the same options):
    the mask, the cut-out or the car on a colour, framed and encoded as asked."""
    from maskingnet.outputs.files import picture_files

    return picture_files((picture,), photo, probs, options)[picture]


def run_model(predictor, items: list) -> list:
    """One model call for a batch of prepared uploads -> one low-resolution probability map each."""
    return list(predictor.infer_prepared(items))


def finish_answer(picture: str, item, small, predictor, options) -> bytes:
    """The photo's full-resolution probabilities (the pipeline's one up-sampling and edge stage); the
    answer's bytes."""
    probs = predictor.full_resolution(small, item)
    return render_answer(picture, item.photo_array(), probs, options)


def load_predictor(config: ServeConfig):
    from maskingnet.inference import Predictor

    return Predictor.from_settings(config.model)


class Service:
    """One loaded model answering requests: the image threads, the micro-batcher (started with the app),
    the pixel budget and the counters that ``/healthz`` and ``/v1/model`` report."""

    def __init__(self, config: ServeConfig, predictor) -> None:
        self.config, self.predictor = config, predictor
        self.summary = model_summary(predictor, config)
        self.started = time.time()
        self.cpu_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.cpu_threads or writer_threads(), thread_name_prefix="images"
        )
        self.budget = PixelBudget(config.pixel_budget)
        self.counters = {"ok": 0, "client_errors": 0}
        self.batcher: MicroBatcher | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        config = self.config
        batcher = MicroBatcher(
            lambda inputs: run_model(self.predictor, inputs),
            config.max_batch,
            config.max_wait_ms / 1000,
            config.queue_size,
        )
        batcher.start()
        self.batcher = batcher
        yield
        await batcher.stop()
        self.cpu_pool.shutdown(wait=False, cancel_futures=True)  # queued work has no one to answer now

    def stats(self) -> dict[str, Any]:
        batcher = self.batcher
        data = dataclasses.asdict(batcher.stats) if batcher else {}
        data["queue_depth"] = batcher.queue.qsize() if batcher else 0
        data["pixels_in_flight"] = self.budget.used
        return {**data, **self.counters}

    def health(self) -> dict[str, Any]:
        from maskingnet.serve.guard import current_guard

        guard = current_guard()
        return {
            "status": "ok",
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 1),
            "rss_mb": rss_mb(),
            "stats": self.stats(),
            "connections": guard.summary() if guard else None,
        }

    async def refuse(self, _request, error: RequestError):
        from fastapi.responses import JSONResponse

        self.counters["client_errors"] += 1
        closing = {"Connection": "close"} if error.status == 408 else None
        body = {"error": error.code, "detail": error.detail}
        return JSONResponse(body, status_code=error.status, headers=closing)

    async def answer(self, kind: str, request):
        """One endpoint's answer: the upload read within its limits, then :meth:`work` within the budget."""
        from fastapi.responses import Response

        config = self.config
        data, fields = await read_upload(request, config.max_upload_bytes, config.read_timeout_s)
        picture, options = request_options(kind, request.query_params, fields)
        loop = asyncio.get_running_loop()
        pixels = await loop.run_in_executor(self.cpu_pool, upload_pixels, data, config.max_pixels)
        try:
            async with self.budget.hold(pixels):
                body, batch_size = await self.work(kind, picture, data, options)
        except Overloaded:
            raise RequestError(503, "busy", "too many requests waiting; retry shortly") from None
        self.counters["ok"] += 1
        media_type = MEDIA_TYPES[options.format_of(picture)]
        return Response(body, media_type=media_type, headers={"X-Batch-Size": str(batch_size)})

    async def work(self, kind: str, picture: str, data: bytes, options) -> tuple[bytes, int]:
        """Decode, model (batched with other requests), full resolution and the picture: its bytes and the
        batch size."""
        loop = asyncio.get_running_loop()
        decode = (decode_for_model, kind, data, self.config.max_pixels, self.predictor)
        item = await loop.run_in_executor(self.cpu_pool, *decode)
        small, batch_size = await self.batcher.submit(item)
        finish = (finish_answer, picture, item, small, self.predictor, options)
        return await loop.run_in_executor(self.cpu_pool, *finish), batch_size


def create_app(config: ServeConfig, predictor=None):
    """The FastAPI application for ``config`` (``predictor``: an already loaded one, e.g. in tests)."""
    try:
        from fastapi import FastAPI

        from maskingnet.serve.access import protect
    except ImportError as error:
        raise ServeError(f"{SERVE_EXTRA_HINT} ({error})") from error
    service = Service(config, predictor or load_predictor(config))
    app = FastAPI(title="maskingnet", summary="Cut cars out of photographs.", lifespan=service.lifespan)
    protect(app, config.access_options())
    app.add_exception_handler(RequestError, service.refuse)
    add_routes(app, service)
    return app


CUTOUT_SUMMARY = "The car cut out of an uploaded photo (PNG, WebP or JPEG; transparent or on a colour)."


def add_routes(app, service: Service) -> None:
    """The endpoints (module docstring of :mod:`maskingnet.serve`)."""
    from fastapi import Request
    from fastapi.responses import HTMLResponse, Response

    @app.post("/v1/mask", summary="Car mask of an uploaded photo (PNG, car 255).")
    async def mask(request: Request) -> Response:
        return await service.answer("mask", request)

    @app.post("/v1/cutout", summary=CUTOUT_SUMMARY)
    async def cutout(request: Request) -> Response:
        return await service.answer("cutout", request)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return service.health()

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        return {**service.summary, "stats": service.stats()}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))


def app_from_env():
    """Application factory for ``uvicorn --factory`` worker processes (config passed in the environment)."""
    return create_app(ServeConfig.from_json(os.environ[CONFIG_ENV]))
