"""From an HTTP request to a photo the model can take: the upload read within its size and time limits,
its options parsed, its pixels counted from the header before decoding; each refusal a JSON status."""

import asyncio

from maskingnet.serve.config import MB

DRAIN_IDLE_S = 1.0


class RequestError(Exception):
    """A request the service refuses: HTTP ``status``, a short ``code`` and a message for the client."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


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


def request_options(kind: str, query, fields: dict[str, str]):
    """The picture to answer with and its options (:mod:`maskingnet.outputs.options`, the options every
    surface takes) from the query string and the form's fields (a field wins); an unknown option or a bad
    value is a 400 naming it."""
    from maskingnet.outputs.options import OUTPUT_OPTIONS, OptionError, options_from_fields, picture_request

    merged = {**dict(query), **fields}
    try:
        return picture_request(kind, **options_from_fields(merged))
    except OptionError as error:
        code = "unknown_option" if error.name not in OUTPUT_OPTIONS else "bad_option"
        raise RequestError(400, code, str(error)) from None


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
