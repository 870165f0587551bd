"""A webhook receiver for the alert tests: a real HTTP server on a thread that records
each JSON body, and can answer 503, hang, or not listen at all (refused connections)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """``mode``: ``ok`` (204), ``fail`` (503) or ``hang`` (no answer until ``release``)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bodies: list[dict[str, Any]] = []
        self.mode = "ok"
        self.requests = 0
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests += 1
                    mode = receiver.mode
                if mode == "hang":
                    receiver._release.wait(30)
                    return
                if mode == "fail":
                    self.send_response(503)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.bodies.append(json.loads(raw))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def release(self) -> None:
        """Let hanging requests go (they answer nothing and close)."""
        self._release.set()

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self, status: str | None = None, task: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                body
                for body in self.bodies
                if (status is None or body.get("status") == status)
                and (task is None or body.get("task") == task)
            ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
