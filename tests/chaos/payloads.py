"""Hostile and generated payloads: the poison classes of issue 11, an oversized payload, and a seeded
mix of valid, mutated and raw-byte messages in all four formats (point 9).

Every message goes to a topic of its own (the sensor level carries a unique id), so the suite can
tell from the `mqtt_topic` header of what reached Kafka (readings or dead letters) that each one was
counted.
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from functools import lru_cache

from schemas import domain as get_domain
from simulators.formats import SIM_FORMATS, encode, rfc3339

I64 = 2**63


def _ts(rng: random.Random, now_ns: int) -> int:
    """A plausible event time: within the day before `now_ns`."""
    return now_ns - rng.randrange(60, 86_400) * 10**9


def today_ns() -> int:
    """The UTC midnight that started today: the generator's clock, fixed for a day so that a seed
    gives the same payloads all day."""
    return time.time_ns() // (86_400 * 10**9) * 86_400 * 10**9


@lru_cache(maxsize=None)
def _ranges(domain: str) -> tuple[list[str], list[float], list[float]]:
    dom = get_domain(domain)
    lo, hi = dom.bounds()
    return dom.fields, lo.tolist(), hi.tolist()


def _values(rng: random.Random, domain: str) -> dict[str, float]:
    """Values inside the domain's physical ranges (the lower half, clear of cross-field rules)."""
    names, lo, hi = _ranges(domain)
    keep = rng.sample(range(len(names)), k=rng.randint(1, len(names)))
    return {names[j]: round(float(lo[j] + (min(hi[j], lo[j] + 1000) - lo[j]) * rng.random() * 0.5), 3) for j in keep}


def native(domain: str, site: str, sensor: str, body: object) -> tuple[str, bytes]:
    return f"city/{domain}/{site}/{sensor}/up", json.dumps(body).encode()


def poison_messages(tag: str, now_ns: int | None = None) -> list[tuple[str, str, bytes]]:
    """(class, topic, payload) for every poison class; each is invalid and must be dead-lettered."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    now = rfc3339(now_ns - 3600 * 10**9)
    ok = {"pm25": 12.0}
    site = "zhonghan"
    cases: list[tuple[str, object | bytes]] = [
        ("ts in epoch milliseconds", {"ts": now_ns // 10**6, "values": ok}),
        ("ts in epoch microseconds", {"ts": now_ns // 10**3, "values": ok}),
        ("ts after 2262 (RFC 3339)", {"ts": "2300-01-01T00:00:00Z", "values": ok}),
        ("ts year 9999", {"ts": "9999-12-31T23:59:59.999999999Z", "values": ok}),
        ("ts 1e30 seconds", {"ts": 1e30, "values": ok}),
        ("ts negative", {"ts": -5, "values": ok}),
        ("ts before 2000", {"ts": "1970-01-01T00:00:01Z", "values": ok}),
        ("ts absurd offset", {"ts": "2026-01-01T00:00:00+99:00", "values": ok}),
        ("300-digit integer value", b'{"ts": "%s", "values": {"pm25": %s}}' % (now.encode(), b"9" * 300)),
        ("negative 300-digit integer", b'{"ts": "%s", "values": {"pm25": -%s}}' % (now.encode(), b"7" * 300)),
        ("1e309 value", b'{"ts": "%s", "values": {"pm25": 1e309}}' % now.encode()),
        ("NaN literal", b'{"ts": "%s", "values": {"pm25": NaN}}' % now.encode()),
        ("-Infinity literal", b'{"ts": "%s", "values": {"pm25": -Infinity}}' % now.encode()),
        ("seq beyond int64", {"ts": now, "seq": I64 + 5, "values": ok}),
        ("seq 2**70 negative", {"ts": now, "seq": -(2**70), "values": ok}),
        ("seq fractional", {"ts": now, "seq": 1.5, "values": ok}),
        ("lat 1e400", b'{"ts": "%s", "lat": 1e400, "values": {"pm25": 1}}' % now.encode()),
        ("non-UTF-8 bytes", b'{"ts": "' + now.encode() + b'", "values": {"pm25\xff\xfe": 1}}'),
        ("nested 100k deep", b"[" * 100_000 + b"]" * 100_000),
        ("empty payload", b""),
        ("JSON null", b"null"),
        ("10,000 fields", {"ts": now, "values": {f"f{i}": i for i in range(10_000)}}),
        ("value is a string", {"ts": now, "values": {"pm25": "12"}}),
        ("value is an object", {"ts": now, "values": {"pm25": {"v": 1}}}),
        (MIXED, [{"ts": now, "values": ok}, 5, None, "x"]),
    ]
    out = []
    for i, (name, body) in enumerate(cases):
        topic = f"city/air/{site}/{tag}-p{i:02d}/up"
        out.append((name, topic, body if isinstance(body, bytes) else json.dumps(body).encode()))
    ts = now
    out.append(("TTN f_cnt beyond int64", f"v3/laoshan-air-lora@laoshan/devices/{tag}-p90/up", json.dumps({
        "end_device_ids": {"device_id": f"{tag}-p90", "application_ids": {"application_id": "laoshan-air-lora"}},
        "received_at": ts, "uplink_message": {"f_cnt": I64 * 4, "decoded_payload": {"pm2_5": 3.0},
                                              "received_at": ts}}).encode()))
    out.append(("ChirpStack fCnt 10**30", f"application/laoshan-air/device/{tag}-p91/event/up", json.dumps({
        "time": ts, "fCnt": 10**30, "object": {"pm2_5": 3.0},
        "deviceInfo": {"deviceProfileName": "laoshan-air-lora", "deviceName": f"{tag}-p91",
                       "devEui": f"{tag}-p91", "tags": {"site": site}}}).encode()))
    out.append(("SenML bt 1e20", f"city/air/{site}/{tag}-p92/senml",
                json.dumps([{"bn": f"{tag}-p92/", "bt": 1e20, "n": "pm25", "v": 3}]).encode()))
    out.append(("SenML t beyond int64 ns", f"city/air/{site}/{tag}-p93/senml",
                json.dumps([{"bn": f"{tag}-p93/", "bt": now_ns // 10**9, "n": "pm25", "v": 3, "t": 1e12}]).encode()))
    return out


MIXED = "array of mixed junk"   # its one valid reading is stored (each reading of a message stands alone)


def valid_inside(poison: list[tuple[str, str, bytes]], now_ns: int) -> dict[str, tuple[str, str, int]]:
    """(sensor, site, ts ns) of the valid reading a poison message carries, by class (the mixed array's)."""
    topic = next(t for name, t, _ in poison if name == MIXED)
    _, _, site, sensor, _ = topic.split("/")
    return {MIXED: (sensor, site, now_ns - 3600 * 10**9)}


def oversized(tag: str, size: int) -> tuple[str, bytes]:
    """One invalid payload of `size` bytes: a reading whose value is a huge string (a field a
    parser may ignore would make it valid, so the size sits where validation must look)."""
    head = b'{"ts": "%s", "values": {"pm25": "' % rfc3339(time.time_ns()).encode()
    return f"city/air/zhonghan/{tag}-big/up", head + b"A" * max(size - len(head) - 3, 0) + b'"}}'


def _mutate(rng: random.Random, payload: bytes, now_s: int) -> bytes:
    """One random corruption of a payload: the kinds of damage radios, firmware and people do."""
    kind = rng.randrange(9)
    b = bytearray(payload)
    if kind == 0 and b:          # truncation
        return bytes(b[: rng.randrange(len(b))])
    if kind == 1 and b:          # bit flips
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 2:                # a number replaced by a hostile one
        hostile = rng.choice([b"1e309", b"9" * rng.randint(20, 400), b"-1e400", b"NaN", b"1" + b"0" * 19,
                              b"18446744073709551616", b"-0.0", b"1e-400", b'"12"', b"null", b"true", b"[]"])
        digits = [i for i, c in enumerate(b) if 48 <= c <= 57]
        if digits:
            i = rng.choice(digits)
            return bytes(b[:i] + hostile + b[i + 1:])
    if kind == 3:                # timestamps of another unit or era
        text = payload.decode("utf-8", "replace")
        return text.replace('"ts":', f'"ts":{rng.choice([1, 1000, 10**6, 10**12, 10**15]) * now_s},"x":', 1).encode()
    if kind == 4 and b:          # garbage inserted
        i = rng.randrange(len(b))
        return bytes(b[:i] + rng.randbytes(rng.randint(1, 40)) + b[i:])
    if kind == 5:                # wrapped in arrays or objects
        return b"[" * rng.randint(1, 50) + payload + b"]" * rng.randint(0, 50)
    if kind == 6:                # duplicated keys / concatenated documents
        return payload + payload
    if kind == 7:                # not UTF-8
        return payload.replace(b'"', b'"\xc3\x28', 1)
    return payload[::-1]         # reversed


def generated(seed: int, n: int, tag: str, now_ns: int | None = None) -> Iterator[tuple[str, str, bytes]]:
    """(kind, topic, payload) for `n` seeded messages: valid in the four formats, mutated, raw bytes,
    and the poison classes; each on its own topic. The same seed, tag and clock (default: today's
    UTC midnight) give the same messages."""
    now_ns = today_ns() if now_ns is None else now_ns
    rng = random.Random(seed)
    domains = ["air", "seawater", "parking", "fire", "garbage"]
    poison = poison_messages(tag, now_ns)
    for i in range(n):
        sensor = f"{tag}-{i:06d}"
        domain = rng.choice(domains)
        fmt = rng.choice(SIM_FORMATS)
        if fmt in ("ttn", "chirpstack") and domain == "fire":
            domain = "air"
        readings = [(_ts(rng, now_ns), rng.randrange(0, 2**31), _values(rng, domain))
                    for _ in range(1 if fmt in ("ttn", "chirpstack") else rng.choice((1, 1, 1, 3, 20)))]
        try:
            topic, payload = encode(fmt, domain, "fuzz-site", sensor, readings)
        except ValueError:       # no LoRaWAN profile carries these fields: send it native
            topic, payload = encode("native", domain, "fuzz-site", sensor, readings)
        roll = rng.random()
        if roll < 0.45:
            yield f"valid {fmt}", topic, payload
        elif roll < 0.85:
            yield f"mutated {fmt}", topic, _mutate(rng, payload, now_ns // 10**9)
        elif roll < 0.95:
            yield "raw bytes", topic, rng.randbytes(rng.randint(0, 600))
        else:
            name, _, body = poison[rng.randrange(len(poison))]
            yield f"poison: {name}", topic, body
