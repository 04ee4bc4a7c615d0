"""One small HTTP server per process: ``/metrics`` (Prometheus), ``/healthz`` (liveness) and ``/ready``
(readiness).

Why not ``prometheus_client.start_http_server``: it answers 200 on every path from a thread that knows nothing
about the process, so probes pointed at it said "healthy" for a worker whose event loop was stuck.

* ``/healthz`` is 200 while the process's own loop has beaten within ``stale_after_s`` (the worker's event loop
  runs a timer that beats; the sink beats once per poll), else 503: a supervisor restarts the process.
* ``/ready`` is 200 when the process's readiness check passes, else 503 with the reason as text: the worker has
  joined its group, is not rebalancing, has recovered its tables and its identity replica has caught up; the sink
  has its partitions and its DuckDB writer.

Guarantees: the answers reflect the last beat and the check at request time; the server runs in a daemon thread
and never blocks the process. Not guaranteed: that a process whose loop beats is making progress (lag and
rate alerts cover that).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

#: A readiness check: ``None`` when ready, else why not (shown in the 503 body).
Readiness = Callable[[], str | None]


class Health:
    """The process's liveness beat and readiness, shared with the HTTP handler.

    Readiness is either a ``check`` the server calls (the sink's, which reads plain attributes) or the reason
    the process's own loop reported with its last beat (the worker's: Faust's objects are only touched on the
    event loop). Before the first beat the process counts as alive for ``startup_s`` (a worker recovering a
    large table beats only once recovery is done) and as not ready."""

    def __init__(
        self, check: Readiness | None = None, stale_after_s: float = 30.0, startup_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.check = check
        self._stale_after_s = stale_after_s
        self._startup_s = startup_s
        self._clock = clock
        self._born = clock()
        self._last_beat: float | None = None
        self._reported: str | None = "starting"

    def beat(self, not_ready: str | None = None) -> None:
        """Called from the process's own loop: it is alive, and ready unless ``not_ready`` says why not."""
        self._last_beat = self._clock()
        self._reported = not_ready

    def alive(self) -> str | None:
        """None when the loop beat recently (or is still starting), else why not."""
        now = self._clock()
        if self._last_beat is None:
            age = now - self._born
            return None if age <= self._startup_s else f"no heartbeat {age:.0f}s after start"
        age = now - self._last_beat
        return None if age <= self._stale_after_s else f"no heartbeat for {age:.0f}s"

    def ready(self) -> str | None:
        """None when ready, else why not (a failing check counts as not ready)."""
        if self.check is None:
            return self._reported
        try:
            return self.check()
        except Exception as exc:  # the check reads another thread's objects: never fail the probe itself
            return f"readiness check failed: {exc!r}"


def ready_gauge(registry: CollectorRegistry) -> Gauge:
    """``omnistream_ready`` on ``registry`` (:func:`serve` makes it follow the process's /ready)."""
    return Gauge("omnistream_ready", "1 when this process's /ready answers 200, else 0", registry=registry)


@dataclass(frozen=True)
class Served:
    """A running server: the port it listens on (port 0 picks one) and how to stop it."""

    port: int
    stop: Callable[[], None]


def serve(registry: CollectorRegistry, health: Health, port: int, addr: str = "0.0.0.0") -> Served:
    """Serve ``/metrics``, ``/healthz`` and ``/ready`` on ``addr:port`` in a daemon thread; ``omnistream_ready``
    on ``registry`` says what ``/ready`` would (1 ready, 0 not), for the alert on processes that stay unready."""
    ready_gauge(registry).set_function(lambda: 0.0 if health.alive() or health.ready() else 1.0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/ready"):
                problem = health.alive() if path == "/healthz" else health.alive() or health.ready()
                body = (problem or "ok").encode() + b"\n"
                self._send(503 if problem else 200, body, "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: /metrics, /healthz, /ready\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # probes come every few seconds: no access log
            return

    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="omnistream-http", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return Served(server.server_port, stop)
