"""The benchmark's own logic: profile summaries, hourly rates, target verdicts, a fair Telegraf config.

No speed is asserted here (speed belongs in bench/); these check that the harness reports what it measured.
"""
from __future__ import annotations

import tomllib

from bench import telegraf
from bench.profile import hourly_rates, quarters, top_functions
from bench.report import markdown, targets
from infra.settings import Settings

COLLAPSED = """\
process 1:"python -m smartcity.cli";_run_code (<frozen runpy>:88);<module> (/w/smartcity/cli.py:5);run (/w/ingest/bridge.py:10);encode (/w/ingest/bridge.py:40) 30
process 1:"python -m smartcity.cli";_run_code (<frozen runpy>:88);<module> (/w/smartcity/cli.py:5);run (/w/ingest/bridge.py:10);dumps (/usr/lib/python3.11/json/__init__.py:231) 50
process 1:"python -m smartcity.cli";_run_code (<frozen runpy>:88);_find_and_load (<frozen importlib._bootstrap>:1) 900
thread 2;_loop (/v/site-packages/paho/mqtt/client.py:1) 20
"""


def test_profile_counts_own_and_inclusive_time_and_leaves_start_up_apart() -> None:
    prof = top_functions(COLLAPSED)
    assert prof["samples"] == 100 and prof["startup_samples"] == 900
    own = {f["function"]: f["share_pct"] for f in prof["self"]}
    assert own == {"dumps (json/__init__.py)": 50.0, "encode (ingest/bridge.py)": 30.0,
                   "_loop (paho/mqtt/client.py)": 20.0}
    incl = {f["function"]: f["share_pct"] for f in prof["inclusive"]}
    assert incl["run (ingest/bridge.py)"] == 80.0
    assert not any("runpy" in f or "cli.py" in f for f in incl)  # wrappers every sample passes through


def test_hourly_rates_show_a_processor_that_slows_down() -> None:
    total, samples, t, c = 24_000, [], 0.0, 0
    while c < total:  # each hour's 1,000 records take one second more than the previous hour's
        hour = c // 1000
        t += (hour + 1) / 10
        c += 100
        samples.append((t, c))
    rates = hourly_rates(samples, total)
    assert len(rates) == 24
    assert rates[0] > 5 * rates[-1]
    assert rates[-1] == round(1000 / 24)


def test_hourly_rates_are_flat_for_a_flat_processor_and_skip_start_up() -> None:
    samples = [(0.0, 0), (5.0, 0)] + [(5.0 + k, 1000 * k) for k in range(1, 25)]  # 5 s of start-up, then 1,000/s
    assert hourly_rates(samples, 24_000) == [1000] * 24


def test_quarter_days_compare_the_start_and_the_end_of_the_day() -> None:
    q = quarters([1000.0] * 6 + [None] * 12 + [500.0] * 6, per_hour=3000)
    assert q == {"first_quarter_readings_per_s": 1000, "last_quarter_readings_per_s": 500, "hour24_vs_hour1": 0.5}


def _cases(bridge_batch: float, tg_batch: float, p99: float) -> dict:
    run = lambda rate, rss=100.0: {"readings_per_s": rate, "msg_per_s": rate,  # noqa: E731
                                   "usage": {"p": {"cpu_s": 1.0, "peak_rss_mb": rss}}}
    return {"mqtt-kafka-batch": {"runs": {"telegraf": run(tg_batch), "bridge x1": run(bridge_batch, 350.0)}},
            "mqtt-kafka-single": {"runs": {"telegraf": run(1000), "bridge x1": run(400), "bridge x2": run(900)}},
            "latency": {"offered_readings_per_s": 5000, "seconds": 300, "p99_s": p99}}


def test_targets_say_met_missed_or_not_measured() -> None:
    verdict = {t["target"]: t["state"] for t in targets(_cases(bridge_batch=1200, tg_batch=1000, p99=2.5))}
    assert verdict["bridge ≥ 1.0× Telegraf, 100-reading messages"] == "met"
    assert verdict["bridge ≥ 0.5× Telegraf, single-reading, one bridge"] == "missed"
    assert verdict["bridges ≥ 0.8× Telegraf, single-reading, two bridges in one share group"] == "met"
    assert verdict["p99 publish → queryable ≤ 2 s at 5,000 readings/s"] == "missed"
    assert verdict["processor ≥ 1.0× Telegraf Kafka → InfluxDB (with compliance)"] == "not measured"
    assert verdict["≤ 300 MB RSS per process (ours)"] == "missed"


def test_the_table_shows_ratios_and_a_failed_case() -> None:
    cases = _cases(bridge_batch=500, tg_batch=1000, p99=1.0)
    cases["kafka-influx"] = {"error": "RuntimeError: InfluxDB refused the token"}
    text = markdown({"date": "d", "git": "g", "argv": [], "machine": {"cores": 2, "load_start": [1, 1, 1],
                     "load_end": [2, 2, 2]}, "cases": cases, "targets": targets(cases)})
    assert "| MQTT → Kafka, 100-reading messages: bridge x1 | 1,000 msg/s" in text and "0.50×" in text
    assert "InfluxDB refused the token" in text


def test_telegraf_is_configured_like_our_tools_deliver() -> None:
    s = Settings()
    mqtt = tomllib.loads(telegraf.mqtt_to_kafka(s, "bench-x").replace("${BENCH_MQTT_PASSWORD}", "p"))
    consumer, producer = mqtt["inputs"]["mqtt_consumer"][0], mqtt["outputs"]["kafka"][0]
    assert consumer["qos"] == 1 and consumer["persistent_session"] and consumer["client_id"] == "bench-x"
    assert "max_undelivered_messages" not in consumer  # default delivery tracking: ack after the output
    assert producer["required_acks"] == -1 and producer["idempotent_writes"] is True
    assert producer["routing_tag"] == "sensor_id"
    assert mqtt["agent"]["flush_interval"] == "200ms"
    sink = tomllib.loads(telegraf.kafka_to_influx(s, ["t.telemetry.air"], "g", "b"))
    kc = sink["inputs"]["kafka_consumer"][0]
    assert kc["kafka_version"] == "3.9.0" and kc["offset"] == "oldest" and kc["json_time_format"] == "unix_ns"
    assert "tags_sensor_id" in kc["tag_keys"] and kc["json_time_key"] == "timestamp"  # Telegraf's own JSON serializer
