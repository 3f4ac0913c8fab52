"""The settings of the HTTP rerank service, and the error every rejected request carries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

API_KEY_ENV = "RANK1_API_KEY"
"""Environment variable holding the API key when ``--api-key`` is not given."""


@dataclass(frozen=True)
class ServeConfig:
    """How ``rank1 serve`` listens, what it accepts, and how it batches.

    Attributes:
        host: Interface to bind; ``127.0.0.1`` (this machine only) unless told otherwise.
        port: TCP port.
        api_key: When set, every request but ``GET /health`` needs ``Authorization: Bearer <key>``.
        served_model_names: Names a request's ``model`` may give (default: the loaded model's name).
        max_documents: Most documents in one request.
        max_body_bytes: Largest request body; a longer one is refused (413) before it is parsed.
        max_query_chars: Longest query, in characters.
        max_batch_pairs: Most (query, document) pairs handed to the model at once; requests are merged
            until the next one would pass this (a larger request is judged alone).
        max_wait_ms: How long the first request of a batch waits for company before the batch starts.
        max_queued_pairs: Pairs waiting beyond this answer 503 (the client should retry later).
        store: Score store file (judged pairs are kept and reused), or ``None`` for none.
        graceful_timeout: On shutdown, seconds to wait for in-flight requests (``None``: no limit).
        log_level: uvicorn's log level.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    served_model_names: tuple[str, ...] = ()
    max_documents: int = 1000
    max_body_bytes: int = 4 << 20
    max_query_chars: int = 4096
    max_batch_pairs: int = 64
    max_wait_ms: float = 5.0
    max_queued_pairs: int = 16384
    store: Path | None = None
    graceful_timeout: float | None = None
    log_level: str = "info"

    def __post_init__(self) -> None:
        """Check every limit, naming the command-line option of a bad one."""
        for name in ("max_documents", "max_body_bytes", "max_query_chars", "max_batch_pairs", "max_queued_pairs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must lie in [0, 65535], not {self.port}")
        if self.max_wait_ms < 0:
            raise ValueError(f"--max-wait-ms must be at least 0, not {self.max_wait_ms}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("--api-key must not be empty")


class RequestError(Exception):
    """A request the service refuses: the HTTP status, the field at fault and a one-line message.

    Args:
        status: HTTP status (400 unreadable body, 401 key, 404 model, 413 too large, 422 bad field,
            500 the model failed, 503 busy or shutting down).
        field: The request field at fault, dotted (``documents.3.text``); ``body`` for the body as a whole,
            ``""`` for a failure of the server's own.
        message: What is wrong, for a person.
    """

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message

    def body(self) -> dict[str, str]:
        """The JSON error body: Cohere's ``message`` (prefixed with the field), ``field`` and ``type``."""
        kind = {401: "unauthorized", 404: "not_found", 413: "too_large", 500: "internal", 503: "unavailable"}.get(
            self.status, "invalid_request")
        message = f"{self.field}: {self.message}" if self.field else f"internal error: {self.message}"
        return {"message": message, "field": self.field, "type": kind}
