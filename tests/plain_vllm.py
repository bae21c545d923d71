"""A stand-in for a plain `vllm serve` (not started by `python -m services.worker`): the OpenAI endpoints BridgeX
uses, and no `GET /bridgex/identity` (404, as vLLM answers an unknown path). It answers every completion with
one fixed word and records the paths asked, so a test sees whether a service asked for the identity and whether
it went on to generate with such a worker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PlainVllm:
    def __init__(self, answer: str = '"x"', model: str = "plain-model") -> None:
        self.answer, self.model = answer, model
        self.paths: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def completions(self) -> int:
        return self.paths.count("POST /v1/completions")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                outer.paths.append(f"GET {self.path}")
                if self.path == "/health":
                    self._send(200, {})
                elif self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": outer.model, "object": "model"}]})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                outer.paths.append(f"POST {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/v1/completions":
                    self._send(
                        200,
                        {
                            "id": "cmpl-1",
                            "object": "text_completion",
                            "model": body.get("model", outer.model),
                            "choices": [{"index": 0, "text": outer.answer, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                        },
                    )
                elif self.path == "/tokenize":
                    self._send(200, {"count": 1, "tokens": [1], "max_model_len": 1024})
                else:
                    self._send(404, {"detail": "Not Found"})

        return Handler

    def start(self) -> PlainVllm:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._server.serve_forever, name="plain-vllm", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def plain_vllm(**kw: str) -> Iterator[PlainVllm]:
    server = PlainVllm(**kw).start()
    try:
        yield server
    finally:
        server.stop()
