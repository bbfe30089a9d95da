"""The one InfluxDB writer: gzip line protocol to the v1 /write endpoint with the service's write-only
v1 credential (HTTP Basic), or to /api/v2/write with the token when there is no v1 credential.

A v1 credential allowed only `write` cannot delete the bucket (a v2 write token can). Both endpoints
answer alike on InfluxDB 2.7.12 (measured; see processors/influx.py), and every answer other than 204
is raised as `InfluxWriteError` with InfluxDB's status, message and headers, so that callers classify
both paths the same way.
"""
from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass
from urllib.parse import urlencode

import urllib3

from infra.settings import InfluxSettings

REFUSED = (400, 422)   # InfluxDB found these lines wrong (422: unprocessable, e.g. a field type conflict)


class InfluxWriteError(Exception):
    """InfluxDB refused a write: `status`, its message (`body`) and the response headers (Retry-After)."""

    def __init__(self, status: int, body: str, headers: urllib3.HTTPHeaderDict) -> None:
        super().__init__(f"InfluxDB answered {status} to a write: {body[:300]}")
        self.status = status
        self.body = body
        self.headers = headers


@dataclass(frozen=True)
class WriteRequest:
    """One write as HTTP: where to POST, the gzipped body and the headers (with the credential)."""

    url: str
    body: bytes
    headers: dict[str, str]


def write_request(cfg: InfluxSettings, bucket: str, lines: list[str]) -> WriteRequest:
    """The HTTP request that writes `lines` (ns precision) to `bucket` with the settings' credential."""
    headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"}
    v1 = cfg.v1_credential()
    if v1 is not None:
        user, password = v1
        basic = base64.b64encode(f"{user}:{password.get_secret_value()}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
        url = f"{cfg.url.rstrip('/')}/write?{urlencode({'db': bucket, 'precision': 'ns'})}"
    else:
        headers["Authorization"] = f"Token {cfg.token_value()}"
        url = f"{cfg.url.rstrip('/')}/api/v2/write?{urlencode({'org': cfg.org, 'bucket': bucket, 'precision': 'ns'})}"
    return WriteRequest(url, gzip.compress("\n".join(lines).encode(), compresslevel=1), headers)


class InfluxWriter:
    """Writes batches of line protocol over one keep-alive connection pool; raises on any refusal."""

    def __init__(self, cfg: InfluxSettings, timeout_s: float = 30.0) -> None:
        self.cfg = cfg
        self.pool = urllib3.PoolManager(maxsize=2, timeout=urllib3.Timeout(total=timeout_s), retries=False)

    def write(self, bucket: str, lines: list[str]) -> None:
        """Write `lines` to `bucket`: returns on 2xx (204), raises `InfluxWriteError` on any other answer and
        urllib3's errors when InfluxDB cannot be reached."""
        req = write_request(self.cfg, bucket, lines)
        resp = self.pool.request("POST", req.url, body=req.body, headers=req.headers, preload_content=True)
        if not 200 <= resp.status < 300:
            raise InfluxWriteError(resp.status, resp.data.decode("utf-8", "replace"), resp.headers)

    def close(self) -> None:
        """Close the pooled connections."""
        self.pool.clear()
