"""`make chaos`: the pipeline under steady simulated load, one fault per lane, reconciled against the
ground truth; 100,000 generated payloads through the live bridge; the security checks. Prints the
table, writes it to .stack/chaos/report.md, exits 1 when anything was lost or duplicated, a process
died, a payload went uncounted or a security check failed.

  python -m tests.chaos.run --full      # every fault, one 10-minute Kafka outage (<= 20 min)
  python -m tests.chaos.run --short     # a few faults, a small fuzz (<= 3 min; part of `make test`)
  python -m tests.chaos.run --only bridge-kill,poison --keep   # chosen lanes, private stack kept up
  python -m tests.chaos.run --down      # stop the private stack (a short run leaves it up for the next)

The alert lanes (alerts-*: tests/chaos/alerting.py) run the router against misbehaving receivers.
Runs itself inside the network namespace of tests/chaos/stack.py against a private stack.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kafka.admin import KafkaAdminClient

from infra.clients import kafka_consumer
from infra.settings import Settings
from infra.stack import create_topics
from tests.chaos import alerting, stack
from tests.chaos.payloads import oversized, poison_messages, valid_inside
from tests.chaos.pipeline import Lane, Load, Outcome, first_sensor, identity, wait_ready

OVERSIZED_BYTES = 10 * 1024 * 1024   # above the broker's max_packet_size
LARGE_BYTES = 200 * 1024             # below it, above the bridge's dead-letter raw bound (64 KiB)


@dataclass
class Fault:
    """A lane: its name, what it does to the pipeline while the load runs, and how long the load lasts."""

    name: str
    act: Callable[[Lane, Load], None]      # returns when the fault is over
    load_seconds: float = 15.0
    drain: float = 120.0                   # longest wait for the pipeline to catch up afterwards
    exclusive: bool = False                # stops Kafka or InfluxDB or disturbs the network: runs alone
                                           # (or beside a check that does not need what it stops)
    routers: bool = True
    own_kafka: bool = False                # the lane has a Kafka of its own and runs beside all the others
    cluster: bool = False                  # on the three-node Kafka cluster (one lane at a time, beside all)


def _restart(name: str, starter: str) -> Callable[[Lane, Load], None]:
    def act(lane: Lane, load: Load) -> None:
        time.sleep(4)
        lane.kill(name)
        time.sleep(2)
        getattr(lane, starter)()
    return act


def _idle(lane: Lane, load: Load) -> None:
    time.sleep(4)


def _bridge2_lost(lane: Lane, load: Load) -> None:
    time.sleep(4)
    lane.kill("bridge2")   # and never restarted


def divided_filters() -> tuple[list[str], list[str]]:
    """Two bridges dividing the stream with plain subscriptions: the first half of the domains' native
    topics and every other format to the first bridge, the rest to the second."""
    from ingest.bridge import SOURCE_FILTERS
    from schemas.registry import domain_names
    names = domain_names()
    own = [f"city/{d}/+/+/up" for d in names]
    half = len(own) // 2
    return own[:half] + [f for f in SOURCE_FILTERS if f != "city/+/+/+/up"], own[half:]


def _rebalance(lane: Lane, load: Load) -> None:
    time.sleep(3)
    lane.start_processor("processor2")
    time.sleep(8)
    lane.kill("processor2", signal.SIGTERM)   # leaves the group cleanly


def _proxy(mode: str, seconds: float = 8, longest: float = 40) -> Callable[[Lane, Load], None]:
    """InfluxDB misbehaving for `seconds`, and longer (up to `longest`) until the fault was met at least
    once: a window in which the processor happened to write nothing would prove nothing."""
    def act(lane: Lane, load: Load) -> None:
        time.sleep(3)
        victim = first_sensor("air", load.sensors) if mode == "422" else ""
        started = time.monotonic()
        lane.proxy_mode(mode, seconds, victim)
        time.sleep(seconds)
        while not _met(lane.proxy_stats(), mode):
            if time.monotonic() - started > longest:
                raise RuntimeError(f"InfluxDB fault {mode} never met a write in {longest:.0f} s: the lane proves nothing")
            lane.proxy_mode(mode, 2, victim)
            time.sleep(2)
    return act


def _met(stats: dict, mode: str) -> bool:
    """Whether the proxy answered with the fault at least once (422: refused at least one line)."""
    return bool(stats["rejected"]) if mode == "422" else stats["answered"].get(mode, 0) > 0


def _netem(lane: Lane, load: Load) -> None:
    """`tc netem` on the namespace's loopback; where the kernel has no netem, the lane's TCP proxy
    on its MQTT hop (delay, stalls for lost segments, one cut of every connection)."""
    time.sleep(3)
    try:
        stack.netem("delay 40ms 10ms loss 3%")
    except subprocess.CalledProcessError:
        lane.note("tc netem unavailable (kernel without sch_netem): TCP proxy on the MQTT hop instead")
        lane.tcp.faulty(15)
        time.sleep(7)
        lane.tcp.reset()
        time.sleep(8)
        lane.note(f"{lane.tcp.stalls} stalled chunks, every connection cut once")
        return
    try:
        time.sleep(15)
    finally:
        stack.netem(None)


def _poison(lane: Lane, load: Load) -> None:
    time.sleep(2)
    now_ns = time.time_ns()
    poison = poison_messages(lane.tag, now_ns)
    lane.publish([(topic, payload) for _, topic, payload in poison],
                 {identity("air", sensor, site, "native", ts) for sensor, site, ts in valid_inside(poison, now_ns).values()})


def _oversized(lane: Lane, load: Load) -> None:
    """10 MB: refused by the broker (max_packet_size 256 KiB closes the sender's connection), nothing of it
    reaches the bridge; 200 KiB (under the broker's bound): dead-lettered by the bridge, raw bytes bounded."""
    time.sleep(3)
    closed = lane.refused_by_broker(*oversized(lane.tag, OVERSIZED_BYTES))
    if closed is None:
        raise RuntimeError("the broker took a 10 MB message (is max_packet_size set?)")
    lane.note(f"10 MB refused by the broker (connection closed: {closed})")
    lane.publish([oversized(lane.tag, LARGE_BYTES)])


def _outage(service: str, seconds: float) -> Callable[[Lane, Load], None]:
    """Stop a broker for `seconds` (Mosquitto: the lane's own; Kafka and InfluxDB: the private stack's)."""
    def act(lane: Lane, load: Load) -> None:
        own = service == "mosquitto" or (service == "kafka" and lane.kafka_port)
        env = lane.script_env if own else None
        time.sleep(4)
        stack.stop_service(service, env)
        time.sleep(seconds)
        stack.start_service(service, env)
        if service == "mosquitto":
            # devices that come back after the restart: a second simulator (another seed, starting after
            # the first one's at most 1.5 simulated days: other point identities) beside the first,
            # whose publisher queued through the outage
            later = (dt.datetime.fromisoformat(load.start.replace("Z", "+00:00")) + dt.timedelta(days=1.55))
            lane.simulate(Load(later.strftime("%Y-%m-%dT%H:%M:%SZ"), 10, seed=load.seed + 1,
                               interval=load.interval), name="sim2")
    return act


def _leaders(lane: Lane) -> dict[tuple[str, int], tuple[int, list[int]]]:
    """(topic, partition) -> (leader, replicas) of the lane's topics on the cluster."""
    admin = KafkaAdminClient(bootstrap_servers=lane.settings.kafka.bootstrap)
    try:
        names = [t for t in admin.list_topics() if t.startswith(lane.settings.kafka.topic_prefix)]
        return {(t["name"], p["partition_index"]): (p["leader_id"], p["replica_nodes"])
                for t in admin.describe_topics(names) for p in t["partitions"]}
    finally:
        admin.close()


def _cluster(kind: str, down_s: float = 10) -> Callable[[Lane, Load], None]:
    """A fault of the Kafka cluster under load: `kill` SIGKILLs the broker leading most of the lane's
    partitions, `controller` the active KRaft controller (both restarted after `down_s`), `stop` shuts
    a broker down for `down_s`, `reassign` moves every partition's leader to another broker."""
    def act(lane: Lane, load: Load) -> None:
        time.sleep(4)
        leaders = _leaders(lane)
        if kind == "reassign":
            plan = {"version": 1, "partitions": [
                {"topic": t, "partition": p, "replicas": [r for r in replicas if r != leader] + [leader]}
                for (t, p), (leader, replicas) in leaders.items()]}
            path = lane.logs / "reassignment.json"
            path.write_text(json.dumps(plan))
            stack.cluster("reassign", str(path))
            after = _leaders(lane)
            moved = sum(after[k][0] != leaders[k][0] for k in leaders)
            lane.note(f"{moved} of {len(leaders)} partition leaders moved")
            if not moved:
                raise RuntimeError("the reassignment moved no leader: the lane proves nothing")
            return
        victim = (stack.cluster("controller") if kind == "controller"
                  else str(Counter(leader for leader, _ in leaders.values()).most_common(1)[0][0]))
        stack.cluster("kill" if kind in ("kill", "controller") else "stop-node", victim)
        lane.note(f"node {victim} {'SIGKILLed' if kind != 'stop' else 'stopped'} for {down_s:.0f} s"
                  + (" (the active controller)" if kind == "controller" else ""))
        time.sleep(down_s)
        stack.cluster("start")
    return act


FAULTS = {f.name: f for f in (
    Fault("none", _idle),
    Fault("bridge-kill", _restart("bridge", "start_bridge")),
    Fault("processor-kill", _restart("processor", "start_processor")),
    Fault("router-kill", _restart("router", "start_router")),
    Fault("share-group-bridge-lost", _bridge2_lost),
    Fault("divided-bridge-lost", _bridge2_lost),
    Fault("processor-rebalance", _rebalance),
    Fault("influx-422", _proxy("422")),
    Fault("influx-429", _proxy("429")),
    Fault("influx-500", _proxy("500")),
    Fault("poison", _poison),
    Fault("oversized-10MB", _oversized),
    Fault("netem-delay-loss", _netem, load_seconds=24, exclusive=True),
    Fault("mosquitto-60s", _outage("mosquitto", 60), load_seconds=75, drain=180),   # the lane's own broker
    Fault("kafka-60s", _outage("kafka", 60), load_seconds=75, exclusive=True, drain=180),
    Fault("influxdb-60s", _outage("influxdb", 60), load_seconds=75, exclusive=True, drain=180),
    Fault("kafka-10min", _outage("kafka", 600), load_seconds=620, drain=300, own_kafka=True),
    Fault("cluster-leader-moved", _cluster("reassign"), load_seconds=20, cluster=True),
    Fault("cluster-broker-sigkill", _cluster("kill"), load_seconds=25, cluster=True),
    Fault("cluster-controller-kill", _cluster("controller"), load_seconds=25, cluster=True),
    Fault("cluster-broker-5min", _cluster("stop", 300), load_seconds=315, drain=240, cluster=True),
)}
NEW_GROUP = "new-group-on-full-topics"
SHORT = ["none", "bridge-kill", "processor-kill", "poison", "influx-500", "alerts-poison"]
FULL = list(FAULTS) + [NEW_GROUP] + list(alerting.LANES)
WAVE = 4   # lanes run side by side (2 cores: more only slows every lane down)
CLUSTER = "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094"   # deploy/native/kafka.sh cluster (default ports)


class Run:
    """One suite run: lanes, their outcomes, and the processes' log folder."""

    def __init__(self, folder: Path, load_start: str, short: bool) -> None:
        self.folder, self.load_start, self.short = folder, load_start, short
        self.base = Settings()
        self.outcomes: dict[str, Outcome] = {}
        self.lanes: dict[str, Lane] = {}
        self.port = 18086
        self.lock = threading.Lock()
        self.cluster_alive: tuple[bool, str] | None = None   # (all 3 nodes up, their status) after the cluster lanes

    def lane(self, fault: str, topics_from: Lane | None = None) -> Lane:
        with self.lock:   # lanes start in threads: tags and ports must be unique
            self.port += 1
            tag = f"{fault.split('-')[0][:10]}{self.port - 18086:02d}{self.folder.name[-4:]}"
            own_kafka = fault in FAULTS and FAULTS[fault].own_kafka
            lane = Lane(tag, fault, self.base, self.folder / fault, self.port, topics_from,
                        mqtt_port=20000 + self.port - 18086,
                        kafka_port=23000 + self.port - 18086 if own_kafka else None,
                        kafka_bootstrap=CLUSTER if fault in FAULTS and FAULTS[fault].cluster else None)
            self.lanes[fault] = lane
        return lane

    def run_fault(self, fault: Fault) -> None:
        lane = self.lane(fault.name)
        outcome = Outcome(fault.name)
        try:
            seconds = fault.load_seconds * (0.8 if self.short else 1.0)
            ticks = seconds * Load.rate
            # simulated time stays in the past (1.5 days from the start at most): no reading from the future
            load = Load(self.load_start, seconds, interval=min(Load.interval, 1.5 * 86400 / ticks))
            outcome.comparable = fault.load_seconds == FAULTS["none"].load_seconds
            lane.setup()
            if fault.name == "netem-delay-loss":
                lane.via_tcp_proxy()
            if fault.name == "share-group-bridge-lost":
                lane.start_bridge("bridge", "--shared", "--adopt-after", "10")
                lane.start_bridge("bridge2", "--shared", "--adopt-after", "10")
            elif fault.name == "divided-bridge-lost":
                first, second = divided_filters()
                lane.start_bridge("bridge", "--adopt-after", "10", *(a for f in first for a in ("--filter", f)))
                lane.start_bridge("bridge2", "--adopt-after", "10", *(a for f in second for a in ("--filter", f)))
            else:
                lane.start_bridge()
            lane.start_processor()
            lane.start_router()
            wait_ready(lane)
            lane.simulate(load)
            fault.act(lane, load)
            fault_end = time.monotonic()
            probe = lane.probe()
            for sim in lane.sims:
                if sim.wait(load.seconds + 600) != 0:  # its truth stops where it died: say so
                    outcome.notes.append(f"simulator exited {sim.returncode} (see sim.log): load cut short")
                    outcome.died.append("simulator")
            self.reconcile(lane, outcome, probe, fault_end, fault.drain)
        except Exception as exc:  # noqa: BLE001 - a broken lane is a row that says so
            self.broken(outcome, exc)
        finally:
            self.finish(lane, outcome)

    @staticmethod
    def broken(outcome: Outcome, exc: Exception) -> None:
        """A lane the suite itself could not run counts as a loss, with the error in its notes."""
        outcome.notes.append(f"suite error: {type(exc).__name__}: {exc}"[:300])
        outcome.lost = max(outcome.lost, 1)

    def finish(self, lane: Lane, outcome: Outcome) -> None:
        """Dead processes noted, the lane stopped, its row recorded."""
        outcome.died += lane.died()
        lane.stop()
        outcome.notes.extend(lane.notes)
        self.outcomes[outcome.fault] = outcome

    def run_cluster(self, faults: list[Fault]) -> None:
        """The cluster lanes one after the other on one three-node cluster (started here, stopped at the end)."""
        try:
            stack.cluster("start")
            warm_up(self.base.model_copy(update={"kafka": self.base.kafka.model_copy(update={"bootstrap": CLUSTER})}))
        except Exception as exc:  # noqa: BLE001
            for fault in faults:
                outcome = Outcome(fault.name)
                self.broken(outcome, exc)
                self.outcomes[fault.name] = outcome
            return
        try:
            for fault in faults:
                self.run_fault(fault)
        finally:
            nodes = stack.cluster("status")
            self.cluster_alive = nodes.count(" up ") == 3, nodes.replace("\n", ", ")
            stack.cluster("stop")

    def run_new_group(self) -> None:
        """A brand-new processor group on the `none` lane's topics (full of data), empty bucket."""
        source = self.lanes.get("none")
        outcome = Outcome(NEW_GROUP)
        if source is None:
            outcome.notes.append("needs the `none` lane first")
            self.outcomes[NEW_GROUP] = outcome
            return
        lane = self.lane(NEW_GROUP, topics_from=source)
        try:
            lane.setup()
            started = time.monotonic()
            lane.start_processor(group=f"{lane.tag}-fresh")
            self.reconcile(lane, outcome, None, started, 120, idle=20)
            outcome.recovery = outcome.recovery if outcome.lost else round(time.monotonic() - started, 1)
        except Exception as exc:  # noqa: BLE001
            self.broken(outcome, exc)
        finally:
            self.finish(lane, outcome)

    def reconcile(self, lane: Lane, outcome: Outcome, probe: str | None, fault_end: float, drain: float,
                  idle: float = 60) -> None:
        offered, valid, invalid = lane.truth()
        proxy = lane.proxy_stats()
        rejected = set(proxy["rejected"])
        if outcome.fault.startswith("influx-"):
            outcome.notes.append(f"proxy answered {proxy['answered']}")
        stored, recovery = lane.drain(valid - rejected, probe, fault_end, drain, idle)
        if any(p.name == "router" for p in lane.procs):
            lane.settle_alerts()
        bridge_dl, influx_dl = lane.dead_letters()
        refused_and_kept = rejected & influx_dl
        outcome.offered, outcome.valid, outcome.stored = offered, len(valid), len(stored & valid)
        outcome.lost = len(valid - stored - refused_and_kept)
        outcome.dup = len(stored - valid)
        outcome.dl_bridge = (len(bridge_dl), invalid)
        outcome.dl_influx = (len(refused_and_kept), len(rejected))
        outcome.alerts = lane.webhook.firing()
        outcome.recovery = None if recovery is None else round(recovery, 1)
        if outcome.dup:
            outcome.notes.append(f"stored, not in the manifest as valid: {sorted(stored - valid)[:3]}")
        if probe and recovery is None:
            outcome.notes.append("probe reading never stored")
        retried = (rejected - influx_dl) & stored
        if retried:
            outcome.notes.append(f"{len(retried)} lines refused by InfluxDB (422) were retried until stored, "
                                 "not isolated and dead-lettered")


def warm_up(settings: Settings, timeout: float = 180) -> None:
    """Until a consumer group can join: a fresh Kafka creates its offsets topic on the first join,
    which must not be charged to the first lanes' recovery."""
    create_topics(settings, prefix="warmup.")
    consumer = kafka_consumer(settings, "chaos-warmup", "warmup.telemetry.air")
    deadline = time.monotonic() + timeout
    try:
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=1000)
    finally:
        consumer.close()


def table(run: Run, extra: list[tuple[str, bool, str]]) -> tuple[str, bool]:
    """The report (markdown) and whether everything passed."""
    expected_alerts = run.outcomes["none"].alerts if "none" in run.outcomes else None
    rows = ["| fault | offered | valid | stored | lost | dup | dead-lettered / injected (bridge; InfluxDB 422) "
            "| alerts delivered / expected | recovery s | processes | notes |",
            "|---|---:|---:|---:|---:|---:|---|---|---:|---|---|"]
    ok = True
    for name, o in run.outcomes.items():
        row_ok = o.lost == 0 and o.dup == 0 and not o.died
        ok &= row_ok
        if expected_alerts is None or not o.comparable:
            alerts = f"{len(o.alerts)} / –"
        else:
            alerts = f"{len(o.alerts & expected_alerts)} / {len(expected_alerts)}"
            if o.alerts - expected_alerts:
                alerts += f" (+{len(o.alerts - expected_alerts)} other)"
        dl = f"{o.dl_bridge[0]} / {o.dl_bridge[1]}" + (f"; {o.dl_influx[0]} / {o.dl_influx[1]}" if o.dl_influx[1] else "")
        rows.append(f"| {name} | {o.offered:,} | {o.valid:,} | {o.stored:,} | {'**%d**' % o.lost if o.lost else 0} "
                    f"| {'**%d**' % o.dup if o.dup else 0} | {dl} | {alerts} "
                    f"| {o.recovery if o.recovery is not None else '**never**'} "
                    f"| {'**died: ' + ', '.join(o.died) + '**' if o.died else 'all alive'} | {'; '.join(o.notes)} |")
    checks = ["", "| check | result | detail |", "|---|---|---|"]
    for name, passed, detail in extra:
        ok &= passed
        checks.append(f"| {name} | {'pass' if passed else '**FAIL**'} | {detail} |")
    return "\n".join(rows + checks), ok


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="chaos suite (see tests/chaos/run.py)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="every fault (<= 20 min)")
    mode.add_argument("--short", action="store_true", help="a few faults (<= 3 min), as in make test")
    parser.add_argument("--only", default="", help="comma-separated lanes (see FAULTS in this file)")
    parser.add_argument("--fuzz", type=int, default=None, help="generated payloads (default 100,000 full, 3,000 short)")
    parser.add_argument("--keep", action="store_true", help="leave the private stack running (--short always does)")
    parser.add_argument("--down", action="store_true", help="only stop the private stack")
    args = parser.parse_args(argv)
    if args.down:
        if stack.STATE.exists():
            stack.down()
        return 0
    if not stack.inside():
        stack.prepare_outside()
        return stack.reexec_inside(argv)
    from tests.chaos import fuzz, security

    started = time.monotonic()
    stack.stop_orphan_lane_brokers()
    if not any(stack.pid_of(s) for s in stack.SERVICES) and stack.STATE.exists():
        shutil.rmtree(stack.STATE)   # a fresh private stack for every run that starts one
    stack.up()
    warm_up(Settings())
    names = [n for n in args.only.split(",") if n] or (FULL if args.full else SHORT)
    unknown = set(names) - set(FULL)
    if unknown:
        print(f"unknown lanes {sorted(unknown)}; known: {', '.join(FULL)}", file=sys.stderr)
        return 2
    day = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z")
    run = Run(stack.STATE / "runs" / f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:4]}", day, not args.full)
    extra: list[tuple[str, bool, str]] = []
    try:
        beside_all = [threading.Thread(target=run.run_fault, args=(FAULTS[n],)) for n in names
                      if n in FAULTS and FAULTS[n].own_kafka]   # the long outage, on the lane's own Kafka
        beside_all += [threading.Thread(target=lambda n=n: extra.extend(alerting.run(run.base, run.folder / "alerts", [n])))
                       for n in names if n in alerting.LONG]
        on_cluster = [FAULTS[n] for n in names if n in FAULTS and FAULTS[n].cluster]
        if on_cluster:
            beside_all.append(threading.Thread(target=run.run_cluster, args=(on_cluster,)))
        for t in beside_all:
            t.start()
        parallel = [FAULTS[n] for n in names if n in FAULTS and not FAULTS[n].exclusive and not FAULTS[n].own_kafka
                    and not FAULTS[n].cluster]
        for i in range(0, len(parallel), WAVE):
            threads = [threading.Thread(target=run.run_fault, args=(f,)) for f in parallel[i:i + WAVE]]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if NEW_GROUP in names:
            run.run_new_group()
        count = args.fuzz if args.fuzz is not None else (100_000 if args.full else 3_000)
        # checks that can share time with an outage of what they do not use
        checks = {"influxdb-60s": lambda: extra.append(fuzz.run(run.base, run.folder / "fuzz", count)) if count else None,
                  "kafka-60s": lambda: extra.extend(security.run(run.base, run.folder / "security"))}
        for n in names:
            if n in FAULTS and FAULTS[n].exclusive:
                beside = checks.pop(n, None)
                thread = threading.Thread(target=beside) if beside else None
                if thread:
                    thread.start()
                run.run_fault(FAULTS[n])
                if thread:
                    thread.join()
        for check in checks.values():
            check()
        extra.extend(alerting.run(run.base, run.folder / "alerts", [n for n in names if n not in alerting.LONG]))
        for t in beside_all:
            t.join()
    finally:
        alive = {s: stack.pid_of(s) is not None for s in stack.SERVICES}
        extra.append(("brokers alive at the end", all(alive.values()),
                      ", ".join(f"{s} {'up' if up else 'DOWN'}" for s, up in alive.items())))
        if run.cluster_alive:
            extra.append(("kafka cluster nodes alive at the end", *run.cluster_alive))
        extra.append(security.secrets_in_logs(stack.STATE, [lane.secret for lane in run.lanes.values()]))
        report, ok = table(run, extra)
        header = (f"# chaos run {run.folder.name} ({'full' if args.full else 'short' if not args.only else args.only}), "
                  f"{time.monotonic() - started:.0f} s, logs in {run.folder}\n\n")
        (stack.STATE / "report.md").write_text(header + report + "\n")
        shutil.copy(stack.STATE / "report.md", run.folder / "report.md")
        print(header + report)
        print(f"\n{'PASS' if ok else 'FAIL'}: report in {stack.STATE / 'report.md'}")
        if args.full and not args.keep:
            stack.down()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
