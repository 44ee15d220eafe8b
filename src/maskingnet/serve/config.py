"""What ``maskingnet serve`` is started with (:class:`ServeConfig`) and the limits derived from it."""

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from maskingnet.data.jpeg_scans import DEFAULT_MAX_SCANS
from maskingnet.errors import MaskingnetError
from maskingnet.inference.settings import ModelSettings

SERVE_EXTRA_HINT = "the HTTP service is an optional extra: pip install 'maskingnet[serve]'"
CONFIG_ENV = "MASKINGNET_SERVE_CONFIG"
MB = 1024 * 1024
BUDGET_PHOTOS = 4


@dataclass
class ServeConfig:
    """Everything ``maskingnet serve`` needs; ``model``: the model's settings, or just a checkpoint."""

    model: ModelSettings
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 20.0
    workers: int = 1
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
        """The :class:`maskingnet.serve.guard.ConnectionLimits` of this configuration."""
        from maskingnet.serve.guard import ConnectionLimits

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
            "max_jpeg_scans": DEFAULT_MAX_SCANS,
        }

    def access_options(self):
        """The :class:`maskingnet.serve.access.AccessOptions` of this configuration."""
        from maskingnet.serve.access import AccessOptions

        return AccessOptions(
            self.host, tuple(self.allowed_hosts), self.api_key, tuple(self.cors_origins), self.access_log
        )

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSettings):
            self.model = ModelSettings(self.model)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["model"] = self.model.to_json_dict()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> "ServeConfig":
        data = json.loads(text)
        data["model"] = ModelSettings.from_json_dict(data["model"])
        for name in ("allowed_hosts", "cors_origins"):
            data[name] = tuple(data.get(name) or ())
        return cls(**data)


class ServeError(MaskingnetError, RuntimeError):
    """The service cannot start (the optional extra is missing)."""
