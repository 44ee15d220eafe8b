"""``maskingnet serve``: an HTTP service that cuts cars out of uploaded photos, with a drag-and-drop page.

Endpoints (all answers to bad requests are JSON ``{"error": code, "detail": message}`` with a 4xx status):

- ``POST /v1/mask`` and ``POST /v1/cutout``: a photo as the multipart field ``file`` (or as the raw request
  body with an ``image/*`` content type) -> PNG. Options as query parameters or form fields: ``background``
  (cut-out only: ``transparent`` or a colour such as ``white``, ``#20a0ff``, ``255,255,255``),
  ``soft_edges`` (``true``/``false``), ``threshold`` (0-1).
- ``GET /healthz``: liveness plus counters; ``GET /v1/model``: the model (name, parameters, input size,
  backend) and the batching counters; ``GET /``: the page.

Requests that arrive together are answered by one model call: decoding and resizing run in a small thread
pool (one thread per core, at most 4, which also bounds the memory held by decoded photos), then each
request waits in a bounded queue in front of a micro-batcher that collects up to ``max_batch`` images for
at most ``max_wait_ms`` and runs the model in its own worker thread (the event loop never blocks on it);
up-sampling the probabilities and encoding the PNG go back to the pool. A mask needs only the photo's
size, so its JPEG is decoded at reduced scale. A full queue answers 503, and so does the server itself
when all ``max_connections`` connections are busy with requests (idle ones are closed to make room).

Upload size is enforced while the body is read: the declared ``Content-Length`` is checked first and the
streamed bytes are counted, so no request is buffered past the limit (413); a body that stalls for
``read_timeout_s`` gets 408. Not an image: 415; a decompression bomb or a photo over ``max_pixels`` (16 MP
by default, far below ``predict``'s 200 MP: a served photo is someone else's choice) or a corrupt image:
422; no ``file`` field: 400.

Memory per request is bounded by what the service allows, not by what a client sends: the upload by
``max_upload_mb``, the decoded photo and everything made from it by ``max_pixels`` (the size is read from
the header first), and all photos in flight together by a pixel budget (:class:`PixelBudget`, four photos
of the largest size): a request that cannot get its share within ``BUDGET_WAIT_S`` gets 503. Connections
are bounded below the application (:mod:`maskingnet.serve_guard`: head and request deadlines, a connection
budget that idle sockets cannot fill).
"""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import io
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskingnet.errors import MaskingnetError
from maskingnet.runtime import resolve_device, writer_threads

SERVE_EXTRA_HINT = "the HTTP service is an optional extra: pip install 'maskingnet[serve]'"
CONFIG_ENV = "MASKINGNET_SERVE_CONFIG"
PAGE = Path(__file__).with_name("web") / "index.html"
MB = 1024 * 1024
DRAIN_IDLE_S = 1.0
BUDGET_WAIT_S = 30.0
BUDGET_PHOTOS = 4
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


@dataclass
class ServeConfig:
    """Everything ``maskingnet serve`` needs; ``size`` None takes the checkpoint's input size."""

    checkpoint: Path
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 20.0
    workers: int = 1
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    size: tuple[int, int] | None = None
    tta: bool = False
    refine: bool = True
    guided: bool = False
    clean: bool = True
    max_batch: int = 8
    max_wait_ms: float = 10.0
    queue_size: int = 64
    max_pixels: int = 16_000_000
    cpu_threads: int | None = None
    max_connections: int = 128
    read_timeout_s: float = 10.0
    request_timeout_s: float = 120.0
    log_level: str = "warning"
    allowed_hosts: tuple[str, ...] = ()
    api_key: str | None = dataclasses.field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    access_log: str | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def pixel_budget(self) -> int:
        """Decoded pixels all requests in flight may hold together."""
        return BUDGET_PHOTOS * self.max_pixels

    def connection_limits(self):
        """The :class:`maskingnet.serve_guard.ConnectionLimits` of this configuration."""
        from maskingnet.serve_guard import ConnectionLimits

        return ConnectionLimits(self.max_connections, self.read_timeout_s, self.request_timeout_s)

    def limits(self) -> dict[str, Any]:
        """What the service bounds, as ``GET /v1/model`` reports it."""
        return {
            "max_upload_mb": self.max_upload_mb,
            "max_pixels": self.max_pixels,
            "pixel_budget": self.pixel_budget,
            "max_connections": self.max_connections,
            "read_timeout_s": self.read_timeout_s,
            "request_timeout_s": self.request_timeout_s,
            "queue_size": self.queue_size,
        }

    def access_options(self):
        """The :class:`maskingnet.serve_access.AccessOptions` of this configuration."""
        from maskingnet.serve_access import AccessOptions

        return AccessOptions(
            self.host, tuple(self.allowed_hosts), self.api_key, tuple(self.cors_origins), self.access_log
        )

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["checkpoint"] = str(self.checkpoint)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> "ServeConfig":
        data = json.loads(text)
        data["checkpoint"] = Path(data["checkpoint"])
        data["size"] = tuple(data["size"]) if data.get("size") else None
        for name in ("allowed_hosts", "cors_origins"):
            data[name] = tuple(data.get(name) or ())
        return cls(**data)


class ServeError(MaskingnetError, RuntimeError):
    """The service cannot start (the optional extra is missing)."""


class RequestError(Exception):
    """A request the service refuses: HTTP ``status``, a short ``code`` and a message for the client."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class Overloaded(Exception):
    """The batching queue is full, or the pixel budget stayed spent for too long."""


class PixelBudget:
    """A weighted semaphore over decoded pixels: a request holds its photo's pixel count from decoding to
    its answer, so the photos in flight (and what is made from them) never exceed ``capacity`` pixels,
    however many requests arrive. Waiting longer than ``wait_s`` raises :class:`Overloaded`."""

    def __init__(self, capacity: int, wait_s: float = BUDGET_WAIT_S) -> None:
        self.capacity = int(capacity)
        self.wait_s = wait_s
        self.used = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int):
        pixels = min(int(pixels), self.capacity)

        def fits() -> bool:
            return self.used + pixels <= self.capacity

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(fits), self.wait_s)
            except asyncio.TimeoutError:
                raise Overloaded from None
            self.used += pixels
        try:
            yield
        finally:
            async with self._changed:
                self.used -= pixels
                self._changed.notify_all()


@dataclass
class BatchStats:
    """Counters of the micro-batcher (reported by ``/healthz`` and ``/v1/model``)."""

    requests: int = 0
    model_calls: int = 0
    batched_requests: int = 0
    max_batch_seen: int = 0
    rejected_overload: int = 0
    model_seconds: float = 0.0


class MicroBatcher:
    """Collects concurrent requests into one call of ``infer(items) -> results`` (same order).

    ``submit`` waits in a bounded queue; a single consumer task takes the first waiting item, then more
    for up to ``max_wait_s`` (or until ``max_batch``), and runs ``infer`` in a one-thread executor, so
    model calls never overlap and the event loop stays free.
    """

    def __init__(
        self,
        infer: Callable[[list[Any]], list[Any]],
        max_batch: int = 8,
        max_wait_s: float = 0.01,
        queue_size: int = 64,
    ) -> None:
        self.infer = infer
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max(1, int(queue_size)))
        self.stats = BatchStats()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, item: Any) -> tuple[Any, int]:
        """The result for ``item`` and the size of the model batch it went in."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((item, future))
        except asyncio.QueueFull:
            self.stats.rejected_overload += 1
            raise Overloaded from None
        self.stats.requests += 1
        return await future

    async def _collect(self) -> list[tuple[Any, asyncio.Future]]:
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return [entry for entry in batch if not entry[1].cancelled()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            items = [item for item, _ in batch]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.infer, items)
            except Exception as error:  # noqa: BLE001 - the waiting requests get the error, the loop goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self._count(len(batch), time.perf_counter() - started)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result((result, len(batch)))

    def _count(self, size: int, seconds: float) -> None:
        stats = self.stats
        stats.model_calls += 1
        stats.model_seconds += seconds
        stats.max_batch_seen = max(stats.max_batch_seen, size)
        if size > 1:
            stats.batched_requests += size


def parse_bool(name: str, value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise RequestError(400, "bad_option", f"{name}={value!r}: expected true or false")


def parse_threshold(value: str | None) -> float:
    if value is None:
        return 0.5
    try:
        threshold = float(value)
    except ValueError:
        threshold = -1.0
    if not 0.0 <= threshold <= 1.0:
        raise RequestError(400, "bad_option", f"threshold={value!r}: expected a number between 0 and 1")
    return threshold


def parse_background(value: str | None) -> tuple[int, int, int] | None:
    """None for a transparent cut-out, else the RGB colour behind the car."""
    from maskingnet.outputs import parse_color

    if value is None or value.strip().lower() in ("", "transparent", "none"):
        return None
    try:
        return parse_color(value)
    except ValueError as error:
        raise RequestError(400, "bad_option", f"background={value!r}: {error}") from None


def status_for_bad_image(reason: str) -> tuple[int, str]:
    """HTTP status and code for a ``BadInputError`` reason from :func:`maskingnet.data.io.read_image`."""
    if reason.startswith("decompression bomb"):
        return 422, "decompression_bomb"
    if reason.startswith("empty file"):
        return 400, "empty_file"
    if reason.startswith("not an image"):
        return 415, "not_an_image"
    return 422, "corrupt_image"


def bad_upload(error) -> RequestError:
    """The :class:`RequestError` for a ``BadInputError`` raised while decoding an upload."""
    status, code = status_for_bad_image(error.reason)
    return RequestError(status, code, f"upload: {error.reason}")


async def bounded_stream(request, limit: int, gap_s: float | None = None):
    """The request body, chunk by chunk, refusing (413) as soon as more than ``limit`` bytes arrived, and
    (408) when no byte comes for ``gap_s`` seconds (a client sending its body slowly holds a connection).

    Nothing past the limit is kept. Before answering, the rest of an oversize body is read and thrown away
    for a bounded time and amount (what web servers call a lingering close): closing a connection with
    unread data makes the kernel reset it, and the client would lose the 413 answer.
    """
    received = 0
    chunks = request.stream()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), gap_s)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise RequestError(408, "timeout", f"upload stalled: no data for {gap_s:g} s") from None
        received += len(chunk)
        if received > limit:
            await discard_rest(chunks, budget=limit)
            raise RequestError(413, "too_large", f"upload is larger than the limit of {limit / MB:g} MB")
        yield chunk


async def discard_rest(chunks, budget: int, idle_s: float = DRAIN_IDLE_S) -> None:
    """Read and drop up to ``budget`` more bytes, stopping at the end of the body or after ``idle_s`` of
    silence."""
    drained = 0
    while drained <= budget:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), idle_s)
        except (StopAsyncIteration, asyncio.TimeoutError):
            return
        except Exception:  # noqa: BLE001 - a client that went away: nothing left to drain
            return
        drained += len(chunk)


def check_declared_length(headers, limit: int) -> None:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            413,
            "too_large",
            f"upload of {int(declared) / MB:.1f} MB is larger than the limit of {limit / MB:g} MB",
        )


async def read_upload(request, limit: int, gap_s: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The uploaded file's bytes and the form's other fields (multipart), or the raw body (``image/*``);
    :func:`bounded_stream` bounds its size and its pauses."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    check_declared_length(request.headers, limit)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        if content_type and not content_type.startswith(("image/", "application/octet-stream")):
            raise RequestError(
                400,
                "missing_file",
                "send the photo as multipart/form-data field 'file' (or as an image/* body)",
            )
        return b"".join([chunk async for chunk in bounded_stream(request, limit, gap_s)]), {}
    body = bounded_stream(request, limit, gap_s)
    parser = MultiPartParser(request.headers, body, max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise RequestError(400, "bad_form", f"multipart form: {error}") from None
    try:
        upload = form.get("file")
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        if upload is None or isinstance(upload, str):
            raise RequestError(400, "missing_file", "the form has no file field named 'file'")
        return await upload.read(), fields
    finally:
        await form.close()


def model_summary(predictor, config: ServeConfig) -> dict[str, Any]:
    """What ``GET /v1/model`` reports about the loaded model."""
    from maskingnet.inference import OnnxBackend
    from maskingnet.models import count_params

    backend = predictor.backend
    model_config = getattr(backend, "config", None)
    return {
        "name": getattr(model_config, "name", None) or Path(config.checkpoint).stem,
        "params": count_params(model_config),
        "size": list(predictor.size),
        "checkpoint": Path(config.checkpoint).name,  # the server's folders are none of a client's business
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


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def render_png(kind: str, photo, probs: np.ndarray, options: dict[str, Any]) -> bytes:
    """The PNG answer: the mask (``L``), the transparent cut-out (``RGBA``) or the car on a colour (RGB)."""
    from PIL import Image

    from maskingnet.outputs import EdgeConfig, alpha_from_probs, render

    edges = EdgeConfig(threshold=options["threshold"], soft=options["soft_edges"])
    if kind == "mask":
        return png_bytes(Image.fromarray(alpha_from_probs(probs, edges), mode="L"))
    background = options.get("background")
    if background is None:
        return png_bytes(render("cutout", np.asarray(photo), probs, edges))
    return png_bytes(render("white", np.asarray(photo), probs, edges, background=background))


def request_options(kind: str, query, fields: dict[str, str]) -> dict[str, Any]:
    merged = {**dict(query), **fields}
    options = {
        "threshold": parse_threshold(merged.get("threshold")),
        "soft_edges": parse_bool("soft_edges", merged.get("soft_edges")),
    }
    if kind == "cutout":
        options["background"] = parse_background(merged.get("background"))
    return options


def upload_pixels(data: bytes, max_pixels: int) -> int:
    """The photo's pixel count from its header (nothing decoded); bombs and non-images refused here."""
    from maskingnet.data.io import BadInputError, image_size

    try:
        width, height = image_size(data, max_pixels=max_pixels)
    except BadInputError as error:
        raise bad_upload(error) from None
    return width * height


def decode_for_model(kind: str, data: bytes, max_pixels: int, predictor):
    """The upload prepared for the model by the predictor (:mod:`maskingnet.inference.preprocess`), exactly
    as ``maskingnet predict`` prepares a file; a mask needs only the photo's size, so its JPEG is decoded
    at reduced scale only (unless the edge stage needs the photo)."""
    from maskingnet.data.io import BadInputError

    try:
        return predictor.prepare(data, need_photo=kind != "mask", max_pixels=max_pixels)
    except BadInputError as error:
        raise bad_upload(error) from None


def run_model(predictor, items: list) -> list:
    """One model call for a batch of prepared uploads -> one low-resolution probability map each."""
    return list(predictor.infer_prepared(items))


def finish_answer(kind: str, item, small, predictor, options: dict[str, Any]) -> bytes:
    """The photo's full-resolution probabilities (the pipeline's one up-sampling and edge stage); the PNG."""
    probs = predictor.full_resolution(small, item)
    return render_png(kind, item.photo_array(), probs, options)


def load_predictor(config: ServeConfig):
    from maskingnet.inference import Predictor

    return Predictor(
        config.checkpoint,
        device=config.device,
        precision=config.precision,
        size=config.size,
        tta=config.tta,
        backend=config.backend,
        refine=config.refine,
        clean=config.clean,
        guided=config.guided,
    )


def create_app(config: ServeConfig, predictor=None):
    """The FastAPI application for ``config`` (``predictor``: an already loaded one, e.g. in tests)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import HTMLResponse, JSONResponse, Response

        from maskingnet.serve_access import protect
    except ImportError as error:
        raise ServeError(f"{SERVE_EXTRA_HINT} ({error})") from error
    predictor = predictor or load_predictor(config)
    summary = model_summary(predictor, config)
    batcher_box: dict[str, MicroBatcher] = {}
    started = time.time()

    cpu_pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=config.cpu_threads or writer_threads(), thread_name_prefix="images"
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        batcher = MicroBatcher(
            lambda inputs: run_model(predictor, inputs),
            config.max_batch,
            config.max_wait_ms / 1000,
            config.queue_size,
        )
        batcher.start()
        batcher_box["batcher"] = batcher
        yield
        await batcher.stop()
        cpu_pool.shutdown(wait=True)

    app = FastAPI(title="maskingnet", summary="Cut cars out of photographs.", lifespan=lifespan)
    protect(app, config.access_options())
    counters = {"ok": 0, "client_errors": 0}
    budget = PixelBudget(config.pixel_budget)

    def stats() -> dict[str, Any]:
        batcher = batcher_box.get("batcher")
        data = dataclasses.asdict(batcher.stats) if batcher else {}
        data["queue_depth"] = batcher.queue.qsize() if batcher else 0
        data["pixels_in_flight"] = budget.used
        return {**data, **counters}

    @app.exception_handler(RequestError)
    async def refuse(_request, error: RequestError):
        counters["client_errors"] += 1
        closing = {"Connection": "close"} if error.status == 408 else None
        body = {"error": error.code, "detail": error.detail}
        return JSONResponse(body, status_code=error.status, headers=closing)

    async def answer(kind: str, request: Request) -> Response:
        data, fields = await read_upload(request, config.max_upload_bytes, config.read_timeout_s)
        options = request_options(kind, request.query_params, fields)
        loop = asyncio.get_running_loop()
        pixels = await loop.run_in_executor(cpu_pool, upload_pixels, data, config.max_pixels)
        try:
            async with budget.hold(pixels):
                png, batch_size = await work(kind, data, options)
        except Overloaded:
            raise RequestError(503, "busy", "too many requests waiting; retry shortly") from None
        counters["ok"] += 1
        return Response(png, media_type="image/png", headers={"X-Batch-Size": str(batch_size)})

    async def work(kind: str, data: bytes, options: dict[str, Any]) -> tuple[bytes, int]:
        """Decode, model (batched with other requests), full resolution and PNG: the PNG and batch size."""
        loop = asyncio.get_running_loop()
        decode = (decode_for_model, kind, data, config.max_pixels, predictor)
        item = await loop.run_in_executor(cpu_pool, *decode)
        small, batch_size = await batcher_box["batcher"].submit(item)
        png = await loop.run_in_executor(cpu_pool, finish_answer, kind, item, small, predictor, options)
        return png, batch_size

    @app.post("/v1/mask", summary="Car mask of an uploaded photo (PNG, car 255).")
    async def mask(request: Request) -> Response:
        return await answer("mask", request)

    @app.post("/v1/cutout", summary="The car cut out of an uploaded photo (PNG, transparent or on a colour).")
    async def cutout(request: Request) -> Response:
        return await answer("cutout", request)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        from maskingnet.serve_guard import current_guard

        guard = current_guard()
        return {
            "status": "ok",
            "pid": os.getpid(),
            "uptime_s": round(time.time() - started, 1),
            "rss_mb": rss_mb(),
            "stats": stats(),
            "connections": guard.summary() if guard else None,
        }

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        return {**summary, "stats": stats()}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return app


def app_from_env():
    """Application factory for ``uvicorn --factory`` worker processes (config passed in the environment)."""
    return create_app(ServeConfig.from_json(os.environ[CONFIG_ENV]))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the real port is known before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(config: ServeConfig, announce: Callable[[str], None] | None = None) -> None:
    """Load the model and serve until interrupted (``workers`` > 1: that many processes, one model each)."""
    try:
        import uvicorn
    except ImportError as error:
        raise ServeError(f"{SERVE_EXTRA_HINT} ({error})") from error
    announce = announce or (lambda line: print(line, file=sys.stderr, flush=True))
    if config.workers > 1:
        serve_workers(config, announce)
        return
    from maskingnet.serve_guard import guarded_protocol

    app = create_app(config)
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http=guarded_protocol(config.connection_limits()),
            log_level=config.log_level,
            timeout_graceful_shutdown=5,
        )
    )
    announce(f"maskingnet serving {config.checkpoint} on http://{host}:{port}")
    server.run(sockets=[sock])


def check_torch_device(config: ServeConfig) -> None:
    """Refuse a device this machine lacks once, in one line, rather than in every worker process."""
    onnx = config.backend == "onnxruntime" or (
        config.backend == "auto" and Path(config.checkpoint).suffix.lower() == ".onnx"
    )
    if not onnx:
        resolve_device(config.device)


def serve_workers(config: ServeConfig, announce: Callable[[str], None]) -> None:
    """``config.workers`` uvicorn processes; each builds its app and its connection guard from the
    configuration left in the environment."""
    import uvicorn

    from maskingnet.serve_guard import GuardedH11Protocol, limits_to_env

    check_torch_device(config)
    if config.port == 0:
        with bind(config.host, 0) as probe:
            config = dataclasses.replace(config, port=probe.getsockname()[1])
    os.environ[CONFIG_ENV] = config.to_json()
    limits_to_env(config.connection_limits())
    address = f"http://{config.host}:{config.port}"
    announce(f"maskingnet serving {config.checkpoint} on {address} ({config.workers} workers)")
    uvicorn.run(
        "maskingnet.serve:app_from_env",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        log_level=config.log_level,
        http=GuardedH11Protocol,
    )
