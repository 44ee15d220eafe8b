"""Start the service: one uvicorn process on a bound socket, or ``workers`` processes that each build
their app from the configuration left in the environment."""

import dataclasses
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from maskingnet.runtime import resolve_device
from maskingnet.serve.app import create_app
from maskingnet.serve.config import CONFIG_ENV, SERVE_EXTRA_HINT, ServeConfig, ServeError


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
    from maskingnet.serve.guard import guarded_protocol

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
    announce(f"maskingnet serving {config.model.checkpoint} on http://{host}:{port}")
    server.run(sockets=[sock])


def check_torch_device(config: ServeConfig) -> None:
    """Refuse a device this machine lacks once, in one line, rather than in every worker process."""
    model = config.model
    onnx = model.backend == "onnxruntime" or (
        model.backend == "auto" and Path(model.checkpoint).suffix.lower() == ".onnx"
    )
    if not onnx:
        resolve_device(model.device)


def serve_workers(config: ServeConfig, announce: Callable[[str], None]) -> None:
    """``config.workers`` uvicorn processes; each builds its app and its connection guard from the
    configuration left in the environment."""
    import uvicorn

    from maskingnet.serve.guard import GuardedH11Protocol, limits_to_env

    check_torch_device(config)
    if config.port == 0:
        with bind(config.host, 0) as probe:
            config = dataclasses.replace(config, port=probe.getsockname()[1])
    os.environ[CONFIG_ENV] = config.to_json()
    limits_to_env(config.connection_limits())
    address = f"http://{config.host}:{config.port}"
    announce(f"maskingnet serving {config.model.checkpoint} on {address} ({config.workers} workers)")
    uvicorn.run(
        "maskingnet.serve.app:app_from_env",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        log_level=config.log_level,
        http=GuardedH11Protocol,
    )
