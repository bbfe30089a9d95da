"""Upload the datasource, the folder and every dashboard to a running Grafana (grafana-client)."""
from __future__ import annotations

from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from dashboards.generate import all_dashboards
from dashboards.panels import DATASOURCE
from infra.settings import Settings


def datasource(settings: Settings) -> dict[str, Any]:
    """The InfluxDB (Flux) datasource the dashboards query, with the operator token."""
    return {"uid": DATASOURCE["uid"], "name": "InfluxDB Laoshan", "type": "influxdb", "access": "proxy",
            "url": settings.grafana.influx_url or settings.influx.url, "isDefault": True,
            "jsonData": {"version": "Flux", "organization": settings.influx.org,
                         "defaultBucket": settings.influx.bucket_compliance},
            "secureJsonData": {"token": settings.influx.token_value()}}


def push(settings: Settings) -> list[str]:
    """Create or update the datasource and folder, then every dashboard; returns the dashboards' URLs."""
    cfg = settings.grafana
    if cfg.token is None:
        raise ValueError("no Grafana token: set SMARTCITY_GRAFANA__TOKEN to a service-account token")
    api = GrafanaApi.from_url(cfg.url, credential=cfg.token.get_secret_value())
    ds = datasource(settings)
    try:
        api.datasource.get_datasource_by_uid(ds["uid"])
        api.datasource.update_datasource_by_uid(ds["uid"], ds)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.datasource.create_datasource(ds)
    try:
        api.folder.get_folder(cfg.folder_uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(cfg.folder_title, uid=cfg.folder_uid)
    urls = []
    for d in all_dashboards():
        body = {"dashboard": {**d.to_json(), "id": None}, "folderUid": cfg.folder_uid, "overwrite": True,
                "message": "smartcity dashboards push"}
        urls.append(api.dashboard.update_dashboard(body)["url"])
    return urls
