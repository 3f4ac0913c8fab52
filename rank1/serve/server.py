"""Running the service with uvicorn: in the foreground (``rank1 serve``) or on a background thread.

Shutdown is graceful either way: uvicorn stops accepting connections and waits for the requests in
flight, then the app's lifespan finishes every queued job and closes the score store on the worker thread.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from rank1.serve.app import create_app
from rank1.serve.config import ServeConfig

if TYPE_CHECKING:
    from rank1.reranker import Reranker, RerankerConfig


def _server(reranker: "Reranker", config: ServeConfig) -> uvicorn.Server:
    app = create_app(reranker, config)
    return uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level=config.log_level,
                                         timeout_graceful_shutdown=config.graceful_timeout, lifespan="on"))


def serve(reranker_config: "RerankerConfig", config: ServeConfig) -> None:
    """Load the model, serve until SIGINT/SIGTERM, then shut down gracefully and release the model.

    Raises:
        rank1.models.ModelError: The model cannot be loaded.
        ValueError: A bad setting.
    """
    from rank1.reranker import Reranker

    def stop(signum: int, frame: Any) -> None:  # uvicorn re-raises the signal once it has shut down
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    with Reranker(reranker_config) as reranker:
        try:
            _server(reranker, config).run()
        except KeyboardInterrupt:  # the service has shut down gracefully already
            pass


class BackgroundServer:
    """The service on a background thread, for tests, benchmarks and notebooks.

    Example:
        >>> with BackgroundServer(reranker) as server:                       # doctest: +SKIP
        ...     httpx.post(f"{server.url}/v1/rerank", json={"query": "q", "documents": ["d"]})

    Args:
        reranker: A loaded reranker; it stays open when the server stops.
        config: Service settings; ``port=0`` (the default here) picks a free port.
        startup_timeout: Seconds to wait for the server to listen.
    """

    def __init__(self, reranker: "Reranker", config: ServeConfig | None = None, startup_timeout: float = 60.0) -> None:
        self.config = config or ServeConfig(port=0, log_level="warning")
        self.server = _server(reranker, self.config)
        self.startup_timeout = startup_timeout
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:53817`` (known once started)."""
        assert self._url is not None, "the server is not started"
        return self._url

    @property
    def app(self) -> Any:
        """The ASGI app (``app.state.service`` holds the counters)."""
        return self.server.config.app

    def start(self) -> "BackgroundServer":
        """Bind, start serving on a thread, and wait until it listens.

        Raises:
            RuntimeError: The server did not start (its error is in the log).
        """
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.config.host, self.config.port))
        host, port = self._socket.getsockname()[:2]
        self._url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]},
                                        name="rank1-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the rank1 server did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Shut down gracefully (requests in flight finish) and wait for the thread."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
