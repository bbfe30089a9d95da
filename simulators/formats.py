"""Encode readings into the four payload formats the bridge accepts (the adapters' inverse).

LoRaWAN formats carry the device's own field names: the domain's device profile in
schemas/devices.toml is inverted, so only the fields the profile maps are sent.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from functools import lru_cache

from schemas.devices import FieldMap, load_profiles

SIM_FORMATS = ("native", "senml", "ttn", "chirpstack")


def rfc3339(ts_ns: int) -> str:
    seconds, frac = divmod(ts_ns, 10**9)
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


@lru_cache(maxsize=16)
def _profile_for(domain: str) -> tuple[str, dict[str, tuple[str, FieldMap | None]]]:
    """(profile name, domain field -> (device field, rule)) for the first profile of `domain`."""
    for name, profile in load_profiles().profiles.items():
        if profile.domain == domain:
            inverse = {}
            for device_field, rule in profile.fields.items():
                if isinstance(rule, str):
                    inverse[rule] = (device_field, None)
                else:
                    inverse[rule.field] = (device_field, rule)
            return name, inverse
    raise ValueError(f"no device profile for domain {domain!r} in schemas/devices.toml")


def _device_value(value: float, rule: FieldMap | None) -> float:
    if rule is None:
        return value
    raw = (1 - value) * rule.depth if rule.depth else value
    return round((raw - rule.offset) / rule.scale, 6)


def encode(fmt: str, domain: str, site: str, sensor: str, readings: list[tuple[int, int, dict[str, float]]]) -> tuple[str, bytes]:
    """(topic, payload) for one sensor's readings [(ts ns, seq, values)] in format `fmt`."""
    if fmt == "native":
        items = [{"ts": rfc3339(ts), "seq": seq, "values": values} for ts, seq, values in readings]
        body = items[0] if len(items) == 1 else items
        return f"city/{domain}/{site}/{sensor}/up", json.dumps(body, separators=(",", ":")).encode()
    if fmt == "senml":
        base_t = readings[0][0] / 1e9
        pack: list[dict] = []
        for ts, _, values in readings:
            for name, value in values.items():
                rec: dict = {"n": name, "v": value}
                if ts / 1e9 != base_t:
                    rec["t"] = round(ts / 1e9 - base_t, 6)
                pack.append(rec)
        pack[0] = {"bn": f"{sensor}/", "bt": base_t, **pack[0]}
        return f"city/{domain}/{site}/{sensor}/senml", json.dumps(pack, separators=(",", ":")).encode()
    profile, inverse = _profile_for(domain)
    ts, seq, values = readings[-1]
    decoded = {inverse[k][0]: _device_value(v, inverse[k][1]) for k, v in values.items() if k in inverse}
    frm = base64.b64encode(json.dumps(decoded).encode()[:16]).decode()
    if fmt == "ttn":
        doc = {
            "end_device_ids": {"device_id": sensor, "application_ids": {"application_id": profile},
                               "dev_eui": hashlib.sha256(sensor.encode()).hexdigest()[:16].upper()},
            "received_at": rfc3339(ts + 40_000_000),
            "uplink_message": {"f_port": 2, "f_cnt": seq, "frm_payload": frm, "decoded_payload": decoded,
                               "rx_metadata": [{"gateway_ids": {"gateway_id": f"laoshan-gw-{site}"},
                                                "time": rfc3339(ts), "rssi": -97, "snr": 7.5}],
                               "received_at": rfc3339(ts + 30_000_000)},
        }
        return f"v3/{profile}@laoshan/devices/{sensor}/up", json.dumps(doc, separators=(",", ":")).encode()
    if fmt == "chirpstack":
        doc = {
            "time": rfc3339(ts), "fCnt": seq, "fPort": 2, "data": frm, "object": decoded,
            "deviceInfo": {"deviceProfileName": profile, "deviceName": sensor, "devEui": sensor,
                           "applicationName": f"laoshan-{domain}", "tags": {"site": site}},
        }
        return f"application/laoshan-{domain}/device/{sensor}/event/up", json.dumps(doc, separators=(",", ":")).encode()
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(SIM_FORMATS)}")
