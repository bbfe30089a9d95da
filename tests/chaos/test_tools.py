"""The chaos suite's own tools: the InfluxDB fault proxy against a stand-in upstream, and the
generated payloads the fuzz check counts by topic."""
from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.chaos.payloads import generated, poison_messages
from tests.chaos.proxy import FaultState, line_identity, make_handler


class Upstream(BaseHTTPRequestHandler):
    """Records write bodies and answers 204, like InfluxDB accepting a write."""

    bodies: list[bytes] = []

    def log_message(self, *args: object) -> None:
        return None

    def do_POST(self) -> None:  # noqa: N802
        Upstream.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def proxy():  # noqa: ANN201
    Upstream.bodies = []
    upstream = _serve(Upstream)
    state = FaultState()
    server = _serve(make_handler(upstream.server_address[1], state))
    yield server.server_address[1], state
    server.shutdown()
    upstream.shutdown()


def _post(port: int, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body=body)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


LINES = b"air,sensor=a-1,site=s,source=native pm25=1 1000\nair,sensor=a-2,site=s,source=native pm25=2 1000"


def test_partial_write_drops_only_the_victims_lines_and_answers_422(proxy) -> None:  # noqa: ANN001
    port, state = proxy
    state.set("422", 30, "a-1")
    for path in ("/api/v2/write?bucket=b", "/write?db=b&precision=ns"):   # v2 and the services' v1 writes
        status, _, body = _post(port, path, LINES)
        assert status == 422 and b"partial write" in body
    assert Upstream.bodies == [b"air,sensor=a-2,site=s,source=native pm25=2 1000"] * 2
    assert state.rejected == {"air,sensor=a-1,site=s,source=native 1000"}
    state.set("pass", 0, "")   # the conflict stays: the refused line is refused again, others pass
    status, _, _ = _post(port, "/api/v2/write?bucket=b", LINES + b"\nair,sensor=a-1,site=s,source=native pm25=3 2000")
    assert status == 422
    assert Upstream.bodies[-1] == b"air,sensor=a-2,site=s,source=native pm25=2 1000\nair,sensor=a-1,site=s,source=native pm25=3 2000"


def test_429_carries_retry_after_and_500_refuses_every_api_call(proxy) -> None:  # noqa: ANN001
    port, state = proxy
    state.set("429", 30, "")
    status, headers, _ = _post(port, "/write?db=b&precision=ns", LINES)
    assert status == 429 and headers.get("Retry-After") == "1"
    state.set("500", 30, "")
    assert _post(port, "/api/v2/query", b"{}")[0] == 500
    assert _post(port, "/write?db=b", LINES)[0] == 500
    assert Upstream.bodies == []


def test_a_mode_ends_by_itself(proxy) -> None:  # noqa: ANN001
    port, state = proxy
    state.set("500", 0.2, "")
    time.sleep(0.3)
    assert _post(port, "/api/v2/write?bucket=b", LINES)[0] == 204
    assert state.answered == Counter({204: 1})


def test_line_identity_is_measurement_tags_and_time() -> None:
    assert line_identity("air,sensor=a,site=s pm25=1,pm10=2 123") == "air,sensor=a,site=s 123"


def test_generated_payloads_are_seeded_and_each_has_a_topic_of_its_own() -> None:
    first = list(generated(7, 600, "t"))
    time.sleep(0.01)
    assert first == list(generated(7, 600, "t"))
    assert len({t for _, t, _ in first}) == 600
    kinds = Counter(k.split(":")[0].split(" ")[0] for k, _, _ in first)
    assert {"valid", "mutated", "raw", "poison"} <= set(kinds)
    formats = Counter(k.split(" ")[1] for k, _, _ in first if k.startswith("valid"))
    assert set(formats) == {"native", "senml", "ttn", "chirpstack"}


def test_every_poison_class_is_on_its_own_topic() -> None:
    cases = poison_messages("t")
    assert len({topic for _, topic, _ in cases}) == len(cases) >= 25
