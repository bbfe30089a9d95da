"""Contract test (no Grafana can be installed here): `dashboards push` against a local HTTP server that
checks every request against Grafana's documented HTTP API: paths, methods, auth, payload shapes."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr

from dashboards.generate import all_dashboards
from dashboards.push import push
from infra.settings import GrafanaSettings, InfluxSettings, Settings

TOKEN = "glsa_contract_token"


class FakeGrafana:
    """Implements the documented endpoints push uses, rejecting anything off-contract with 400."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict | None]] = []
        self.datasources: dict[str, dict] = {}
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                grafana.calls.append((method, self.path, body))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._reply(401, {"message": "Unauthorized"})
                status, reply = grafana.route(method, self.path, body)
                self._reply(status, reply)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._handle("PUT")

            def log_message(self, *args) -> None:  # noqa: ANN002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            return (200, self.datasources[uid]) if uid in self.datasources else (404, {"message": "Data source not found"})
        if method in ("POST", "PUT") and (path == "/api/datasources" or path.startswith("/api/datasources/uid/")):
            problems = check_datasource(body)
            if problems:
                return 400, {"message": "; ".join(problems)}
            self.datasources[body["uid"]] = {**body, "id": 1}
            return 200, {"datasource": self.datasources[body["uid"]], "id": 1, "message": "Datasource saved", "name": body["name"]}
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            return (200, self.folders[uid]) if uid in self.folders else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            if not isinstance(body.get("title"), str) or not body["title"]:
                return 400, {"message": "title required"}
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": len(self.folders) + 1}
            return 200, self.folders[body["uid"]]
        if method == "POST" and path == "/api/dashboards/db":
            problems = check_dashboard(body, self.folders)
            if problems:
                return 400, {"message": "; ".join(problems)}
            d = body["dashboard"]
            version = self.dashboards.get(d["uid"], {}).get("version", 0) + 1
            self.dashboards[d["uid"]] = {**d, "version": version}
            return 200, {"id": 1, "uid": d["uid"], "url": f"/d/{d['uid']}/x", "status": "success", "version": version}
        return 404, {"message": f"no route {method} {path}"}


def check_datasource(ds: dict | None) -> list[str]:
    problems = []
    if not ds:
        return ["empty body"]
    for key in ("name", "type", "access", "url", "uid"):
        if not isinstance(ds.get(key), str) or not ds[key]:
            problems.append(f"{key} must be a non-empty string")
    if ds.get("access") not in ("proxy", "direct"):
        problems.append("access must be proxy or direct")
    if ds.get("type") == "influxdb" and ds.get("jsonData", {}).get("version") == "Flux":
        if not ds["jsonData"].get("organization"):
            problems.append("Flux needs jsonData.organization")
        if not ds.get("secureJsonData", {}).get("token"):
            problems.append("Flux needs secureJsonData.token")
    return problems


def check_dashboard(body: dict | None, folders: dict) -> list[str]:
    problems = []
    d = (body or {}).get("dashboard")
    if not isinstance(d, dict):
        return ["dashboard object required"]
    if d.get("id") is not None:
        problems.append("dashboard.id must be null (uid identifies it)")
    if not d.get("title") or not d.get("uid") or len(d["uid"]) > 40:
        problems.append("title and a uid of at most 40 characters are required")
    if not isinstance(d.get("panels"), list) or not isinstance(d.get("schemaVersion"), int):
        problems.append("panels list and integer schemaVersion required")
    if body.get("folderUid") not in folders:
        problems.append("folderUid must name an existing folder")
    if not isinstance(body.get("overwrite"), bool):
        problems.append("overwrite must be a boolean")
    return problems


@pytest.fixture
def grafana():
    fake = FakeGrafana()
    yield fake
    fake.server.shutdown()


def settings_for(url: str, token: str | None = TOKEN) -> Settings:
    return Settings(grafana=GrafanaSettings(url=url, token=SecretStr(token) if token else None,
                                            influx_url="http://influxdb:8086"),
                    influx=InfluxSettings(token=SecretStr("influx-token")))


def test_push_creates_datasource_folder_and_every_dashboard(grafana: FakeGrafana) -> None:
    urls = push(settings_for(grafana.url))
    uids = [d.uid for d in all_dashboards()]
    assert urls == [f"/d/{u}/x" for u in uids] and sorted(grafana.dashboards) == sorted(uids)
    assert grafana.datasources["influxdb-laoshan"]["jsonData"]["version"] == "Flux"
    assert grafana.datasources["influxdb-laoshan"]["url"] == "http://influxdb:8086"
    sequence = [(m, p) for m, p, _ in grafana.calls]
    assert sequence[:4] == [("GET", "/api/datasources/uid/influxdb-laoshan"), ("POST", "/api/datasources"),
                            ("GET", "/api/folders/laoshan"), ("POST", "/api/folders")]
    assert sequence[4:] == [("POST", "/api/dashboards/db")] * len(uids)


def test_a_second_push_updates_in_place(grafana: FakeGrafana) -> None:
    push(settings_for(grafana.url))
    grafana.calls.clear()
    push(settings_for(grafana.url))
    sequence = [(m, p) for m, p, _ in grafana.calls]
    assert ("PUT", "/api/datasources/uid/influxdb-laoshan") in sequence and ("POST", "/api/folders") not in sequence
    assert all(d["version"] == 2 for d in grafana.dashboards.values())


def test_without_a_token_push_says_what_to_set(grafana: FakeGrafana) -> None:
    with pytest.raises(ValueError, match="SMARTCITY_GRAFANA__TOKEN"):
        push(settings_for(grafana.url, token=None))
    assert grafana.calls == []
