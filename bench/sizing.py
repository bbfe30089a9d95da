"""Sizing past one machine, from a run's measured CPU cost per reading (`python -m bench.sizing [results.json]`).

Every device sends one reading a minute in its own message (what LoRaWAN and most native devices do),
so the single-reading cost of the bridge applies. A Python process uses at most one core (the GIL),
and we plan each at 60% of a core, which leaves room to drain a backlog after an outage at about 1.7x
the live rate. Partitions per domain topic are twice the processors that read it (rounded up to a
power of two), so the consumer group can double without re-keying the topics.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from bench.report import cpu_cost

CITIES = {"Laoshan district": 50_000, "Qingdao city": 1_000_000}
UTILISATION = 0.6
DOMAINS = 5
# Published single-node figures we compare with, for components we cannot push to their limit here:
MOSQUITTO_SINGLE_THREAD_MSG_S = 60_000    # QoS 1 in + out on one core, a generous single-thread estimate
INFLUXDB_OSS_NODE_POINTS_S = 300_000       # a well-provisioned single InfluxDB 2.x OSS node (8-16 cores)


def costs(results: dict) -> dict:
    """CPU seconds per million readings of our processes (and Telegraf's), from a results document."""
    cases = results["cases"]

    def cpu(case: str, tool: str) -> float | None:
        return cpu_cost(cases.get(case, {}).get("runs", {}).get(tool, {}))

    day = cases.get("processor-day", {}).get("usage", {}).get("day-process", {})
    return {"bridge_single": cpu("mqtt-kafka-single", "bridge x1"), "bridge_batch": cpu("mqtt-kafka-batch", "bridge x1"),
            "telegraf_single": cpu("mqtt-kafka-single", "telegraf"), "telegraf_sink": cpu("kafka-influx", "telegraf"),
            "processor": cpu("kafka-influx", "smartcity process"),
            "processor_day": day.get("cpu_s_per_million_readings"),
            "influx_points_s": cases.get("components", {}).get("influxdb", {}).get("points_per_s"),
            "mosquitto_msg_s": cases.get("components", {}).get("mosquitto", {}).get("pubsub_msg_per_s")}


def plan(devices: int, c: dict) -> dict:
    """What `devices` at one reading a minute need, from the per-reading costs `c`."""
    rate = devices / 60
    processor_cost = max(v for v in (c["processor"], c["processor_day"]) if v)
    bridge_cores = rate * c["bridge_single"] / 1e6
    proc_cores = rate * processor_cost / 1e6
    bridges = max(1, math.ceil(bridge_cores / UTILISATION))
    processors = max(1, math.ceil(proc_cores / UTILISATION))
    per_domain = math.ceil(processors / DOMAINS) if processors > DOMAINS else 1
    partitions = 2 ** math.ceil(math.log2(max(2 * per_domain, 6)))
    return {"readings_s": rate, "bridge_cores": bridge_cores, "bridges": bridges, "processor_cores": proc_cores,
            "processors": processors, "partitions_per_domain": partitions, "influx_points_s": rate * 1.05,
            "mosquitto_msg_s": 2 * rate}


def markdown(results: dict) -> str:
    c = costs(results)
    if not (c["bridge_single"] and (c["processor"] or c["processor_day"])):
        return "Sizing needs the mqtt-kafka-single and kafka-influx (or processor-day) cases.\n"
    rows = {name: plan(n, c) for name, n in CITIES.items()}
    head = "| | " + " | ".join(f"{k} (~{n:,} devices)" for k, n in CITIES.items()) + " |"
    out = ["Measured cost (CPU seconds per million readings): bridge "
           f"{c['bridge_single']} (single-reading messages; {c['bridge_batch']} with 100 per message), processor "
           f"{max(v for v in (c['processor'], c['processor_day']) if v)} (raw + compliance); Telegraf "
           f"{c['telegraf_single']} (MQTT → Kafka) and {c['telegraf_sink']} (Kafka → InfluxDB).", "",
           head, "|---|" + "---|" * len(CITIES)]

    def row(label: str, fmt) -> None:  # noqa: ANN001
        out.append(f"| {label} | " + " | ".join(fmt(r) for r in rows.values()) + " |")

    row("readings/s (one a minute each)", lambda r: f"{r['readings_s']:,.0f}")
    row(f"bridge cores / processes at {UTILISATION:.0%}", lambda r: f"{r['bridge_cores']:.1f} / **{r['bridges']}**")
    row(f"processor cores / processes at {UTILISATION:.0%}",
        lambda r: f"{r['processor_cores']:.1f} / **{r['processors']}**")
    row("Kafka partitions per domain topic", lambda r: f"{r['partitions_per_domain']}")
    row("Kafka in (records/s, ~270 B each today)", lambda r: f"{r['readings_s']:,.0f} ({r['readings_s'] * 270 / 1e6:.1f} MB/s)")
    row("InfluxDB writes (points/s, raw + ~5% aggregates)", lambda r: f"{r['influx_points_s']:,.0f}")
    row("Mosquitto (msg/s in + out)", lambda r: f"{r['mosquitto_msg_s']:,.0f}")
    meas = (f"here (2 shared cores): InfluxDB {c['influx_points_s'] or '–'} points/s, Mosquitto QoS 1 "
            f"{c['mosquitto_msg_s'] or '–'} msg/s through one Python subscriber")
    out += ["", f"Measured single-service figures {meas}; references for a dedicated node: Mosquitto "
            f"~{MOSQUITTO_SINGLE_THREAD_MSG_S:,} msg/s (one thread), InfluxDB OSS ~{INFLUXDB_OSS_NODE_POINTS_S:,} points/s."]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else max(Path(__file__).with_name("results").glob("*.json"))
    print(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
