"""A local OpenAI-compatible chat endpoint for tests: scripted answers, requests recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Script:
    """Answers in order (status, content, finish_reason); the last one repeats."""

    answers: list[tuple[int, str, str]]
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self, request: dict) -> tuple[int, str, str]:
        with self.lock:
            self.requests.append(request)
            return self.answers[min(len(self.requests), len(self.answers)) - 1]


def chat_answer(content: str, finish_reason: str = "stop") -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": finish_reason}],
                       "usage": {"completion_tokens": len(content) // 4}}).encode()


@contextmanager
def serve(script: Script) -> Iterator[str]:
    """Serve `script` on 127.0.0.1; yields the base URL (…/v1)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, content, finish_reason = script.next_answer({"path": self.path, "body": body,
                                                                  "auth": self.headers.get("Authorization")})
            payload = chat_answer(content, finish_reason) if status == 200 else b'{"error":"scripted"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
