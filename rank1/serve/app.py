"""The ASGI app: routes, the API key, body limits, and JSON errors.

Routes: ``POST /v1/rerank`` (also ``/rerank`` and ``/v2/rerank``, as vLLM serves them), ``GET /v1/models``
and ``GET /health``. Every error is a JSON body ``{message, field, type}`` with a 4xx status (503 when busy
or shutting down); an unexpected failure is a 500 with a one-line message, never a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rank1.serve.batcher import BatcherClosed, MicroBatcher, QueueFull
from rank1.serve.config import RequestError, ServeConfig
from rank1.serve.engine import Job, JobResult, JudgeSpec, ScoringEngine
from rank1.serve.schema import RerankRequest, rerank_response

if TYPE_CHECKING:
    from rank1.reranker import Reranker

log = logging.getLogger("rank1.serve")
RERANK_PATHS = ("/v1/rerank", "/rerank", "/v2/rerank")


class Service:
    """What the routes share: the settings, the worker (engine + batcher) and the counters.

    Args:
        reranker: The loaded reranker (its settings are the defaults of every request).
        config: The service settings.
    """

    def __init__(self, reranker: "Reranker", config: ServeConfig) -> None:
        self.config, self.reranker = config, reranker
        self.names = config.served_model_names or (reranker.model_ref.name,)
        c = reranker.config
        self.default = JudgeSpec(c.mode, c.budget, c.max_passage_tokens)
        self.engine = ScoringEngine(reranker, config.store)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rank1-model")
        self.batcher: MicroBatcher[Job, JobResult] = MicroBatcher(
            lambda jobs: self.engine.run(jobs), size=lambda job: job.size, max_batch=config.max_batch_pairs,
            max_wait=config.max_wait_ms / 1000, executor=self.executor, max_queued=config.max_queued_pairs)
        self.requests = 0
        self.closing = False

    async def start(self) -> None:
        """Open the store on the worker thread and start batching."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.engine.open)
        self.batcher.start()
        logging.getLogger("uvicorn.error").info(  # uvicorn's logger: shown at its log level
            "rank1: serving %s (%s mode, %s backend), score cache %s, API key %s", self.names[0],
            self.default.mode, self.reranker.config.backend, self.config.store or "off",
            "required" if self.config.api_key else "off")

    async def stop(self) -> None:
        """Finish every queued request, then close the store on the worker thread."""
        self.closing = True
        await self.batcher.close()
        await asyncio.get_running_loop().run_in_executor(self.executor, self.engine.close)
        self.executor.shutdown(wait=True)

    def check_key(self, request: Request) -> None:
        """Refuse a request without the API key (compared in constant time).

        Raises:
            RequestError: 401.
        """
        if self.config.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if not header:
            raise RequestError(401, "authorization", "missing; send 'Authorization: Bearer <key>'")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.config.api_key.encode()):
            raise RequestError(401, "authorization", "wrong API key")

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused (413) as soon as it is known to pass the limit, before parsing."""
        limit = self.config.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise RequestError(400, "content-length", f"not a number: {length!r}")
            if int(length) > limit:
                raise RequestError(413, "body", f"{int(length)} bytes; this server takes at most {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, "body", f"more than {limit} bytes; this server takes at most {limit}")
            chunks.append(chunk)
        return b"".join(chunks)

    async def rerank(self, request: Request) -> dict[str, Any]:
        """Validate a rerank request, queue it, and build the response."""
        self.check_key(request)
        parsed = RerankRequest.parse(await self.read_body(request))
        if parsed.model is not None and parsed.model not in self.names:
            raise RequestError(404, "model", f"{parsed.model!r} is not served here; served: {', '.join(self.names)}")
        texts = parsed.texts(self.config.max_documents, self.config.max_query_chars)
        spec, warnings = parsed.spec(self.default)
        self.requests += 1
        try:
            result = await self.batcher.submit(Job(parsed.query, tuple(texts), spec))
        except QueueFull as err:
            raise RequestError(503, "body", f"busy ({err}); retry later") from None
        except BatcherClosed as err:
            raise RequestError(503, "body", str(err)) from None
        except Exception as err:  # noqa: BLE001 (the model failed: one line to the client, the traceback to the log)
            log.error("rerank batch failed", exc_info=err)
            raise RequestError(500, "", f"{type(err).__name__}: {err}") from None
        return rerank_response(parsed, spec, result, parsed.model or self.names[0], warnings)

    def models(self) -> dict[str, Any]:
        """``GET /v1/models`` in OpenAI's shape, with the judging settings."""
        meta = self.reranker.meta
        info = {"object": "model", "created": int(time.time()), "owned_by": "rank1", "root": meta["model"],
                "fingerprint": meta["model_fingerprint"], "backend": meta["backend"], "mode": self.default.mode,
                "budget": self.default.budget, "max_tokens_per_doc": self.default.max_tokens,
                "max_documents": self.config.max_documents}
        return {"object": "list", "data": [{"id": name, **info} for name in self.names]}

    def health(self) -> dict[str, Any]:
        """``GET /health``: status, model and counters."""
        return {"status": "closing" if self.closing else "ok", "model": self.names[0],
                "mode": self.default.mode, "requests": self.requests, "batches": self.batcher.batches,
                "pairs_judged": self.engine.judged, "pairs_cached": self.engine.cached,
                "queued_pairs": self.batcher.queued}


def create_app(reranker: "Reranker", config: ServeConfig | None = None) -> FastAPI:
    """The rerank service over a loaded reranker (run it with uvicorn, see :mod:`rank1.serve.server`).

    The reranker is only used on the service's worker thread while the app runs; the caller closes it.
    """
    service = Service(reranker, config or ServeConfig())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="rank1 rerank service", lifespan=lifespan)
    app.state.service = service
    schema = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": RerankRequest.model_json_schema()}}}}

    async def rerank(request: Request) -> JSONResponse:
        return JSONResponse(await service.rerank(request))

    for path in RERANK_PATHS:
        app.add_api_route(path, rerank, methods=["POST"], openapi_extra=schema, summary="Rerank documents")

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        service.check_key(request)
        return JSONResponse(service.models())

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse(service.health(), status_code=503 if service.closing else 200)

    @app.exception_handler(RequestError)
    async def refused(_: Request, err: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        if err.status == 503:
            headers = {"Retry-After": "1"}
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        field = "method" if err.status_code == 405 else "path"
        return JSONResponse(RequestError(err.status_code, field, f"{request.method} {request.url.path}: "
                                         f"{err.detail}").body(), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def failed(_: Request, err: Exception) -> JSONResponse:
        log.error("request failed", exc_info=err)
        return JSONResponse(RequestError(500, "", f"{type(err).__name__}: {err}").body(), status_code=500)

    return app
