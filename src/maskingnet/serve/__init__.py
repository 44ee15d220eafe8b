"""``maskingnet serve``: an HTTP service that cuts cars out of uploaded photos, with a drag-and-drop page.

Endpoints (all answers to bad requests are JSON ``{"error": code, "detail": message}`` with a 4xx status):

- ``POST /v1/mask`` and ``POST /v1/cutout``: a photo as the multipart field ``file`` (or as the raw request
  body with an ``image/*`` content type) -> the picture. Options as query parameters or form fields, the
  same as on every surface (:mod:`maskingnet.outputs.options`): ``format`` (png, webp, jpg), ``quality``,
  ``crop_to_car``, ``margin``, ``canvas`` (WxH), ``background`` (``transparent`` or a colour such as
  ``white``, ``#20a0ff``, ``255,255,255``), ``soft_edges`` (``true``/``false``), ``threshold`` (0-1); an
  unknown one is a 400 naming it.
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
the header first), and all photos in flight together by a pixel budget
(:class:`~maskingnet.serve.batcher.PixelBudget`, four photos of the largest size): a request that cannot get
its share within ``BUDGET_WAIT_S`` gets 503. Connections are bounded below the application
(:mod:`maskingnet.serve.guard`: head and request deadlines, a connection budget that idle sockets cannot
fill).

Modules: ``config`` (the options), ``uploads`` (request to photo), ``batcher`` (one model call for many
requests), ``app`` (the endpoints), ``server`` (uvicorn), ``guard`` (connection limits below the app),
``access`` (who may call it), ``page`` (the drag-and-drop page).
"""

from __future__ import annotations

from maskingnet.utils import lazy_exports

_EXPORTS = {
    "ServeConfig": "maskingnet.serve.config",
    "ServeError": "maskingnet.serve.config",
    "create_app": "maskingnet.serve.app",
    "serve": "maskingnet.serve.server",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
