"""kafka-python's group leader against the real Kafka: partitions added to a topic reach a consumer.

The stall this guards against (infra.clients.fix_leader_rejoin): the leader notices new partitions,
starts a rejoin, and the application stays away from poll() while the join completes on the IO
thread (a processor computing a checkpoint does exactly this). On the stock 3.0.12 client that join is
never applied: the leader stays REBALANCING with no partitions fetched. Reproduce it with
`SMARTCITY_KAFKA_STOCK_REJOIN=1 pytest tests/integration/test_kafka_client.py` (fails).
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import CommitFailedError, RebalanceInProgressError

from infra.clients import kafka_consumer, kafka_producer
from infra.settings import Settings

pytestmark = pytest.mark.integration
ROUNDS = 3          # the stock client stalled in every round whose leader paused (3 of 3, then 4 of 4)
PAUSE_S = 5.0       # the leader's time away from poll() right after starting its rejoin
SETTLE_S = 25.0     # a fixed client applies the new assignment within the pause + one rejoin (~7 s)


class Member:
    """One consumer of the group on its own thread, committing after every poll; the leader pauses
    once right after the poll that starts its rejoin on the grown topic."""

    def __init__(self, consumer: KafkaConsumer, topic: str, seen: Counter, lock: threading.Lock) -> None:
        self.consumer, self.topic, self.seen, self.lock = consumer, topic, seen, lock
        self.grown, self.stopping, self.paused = threading.Event(), threading.Event(), False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def leader_saw_growth(self) -> bool:
        coordinator = self.consumer._coordinator
        return bool(coordinator._is_leader and len(coordinator._metadata_snapshot.get(self.topic, ())) == 6)

    def run(self) -> None:
        while not self.stopping.is_set():
            if self.grown.is_set() and not self.paused and self.leader_saw_growth():
                self.consumer.poll(timeout_ms=0)   # starts the rejoin; the join needs the other member
                self.paused = True
                time.sleep(PAUSE_S)
            for records in self.consumer.poll(timeout_ms=100).values():
                with self.lock:
                    self.seen.update(r.value for r in records)
            if self.consumer.assignment():
                try:
                    self.consumer.commit()
                except (CommitFailedError, RebalanceInProgressError):   # a rebalance began: commit after it
                    pass
            time.sleep(0.05)

    def partitions(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}


def _one_round(settings: Settings) -> dict[str, float]:
    topic, admin = f"stall-{uuid.uuid4().hex[:10]}", KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)], timeout_ms=30_000)
    seen, lock, sent = Counter(), threading.Lock(), []
    producer = kafka_producer(settings, metadata_max_age_ms=500, linger_ms=5)
    members = [Member(kafka_consumer(settings, f"g-{topic}", topic, metadata_max_age_ms=500,
                                     heartbeat_interval_ms=1000), topic, seen, lock) for _ in range(2)]
    producing = threading.Event()

    def produce() -> None:
        seq = 0
        while not producing.is_set():
            parts = sorted(producer.partitions_for(topic) or {0})
            value = b"%08d" % seq
            producer.send(topic, value, partition=parts[seq % len(parts)])
            sent.append(value)
            seq += 1
            time.sleep(0.01)
        producer.flush()

    try:
        for m in members:
            m.thread.start()
        deadline = time.monotonic() + 30
        while not (members[0].partitions() | members[1].partitions() == {0, 1}) and time.monotonic() < deadline:
            time.sleep(0.1)
        feeder = threading.Thread(target=produce, daemon=True)
        feeder.start()
        time.sleep(1)
        for m in members:
            m.grown.set()
        admin.create_partitions({topic: NewPartitions(6)}, timeout_ms=30_000)
        grown_at, settled = time.monotonic(), None
        while time.monotonic() - grown_at < SETTLE_S:
            a, b = members[0].partitions(), members[1].partitions()
            if a | b == set(range(6)) and not a & b and all(
                    not m.consumer._coordinator.rebalance_in_progress() for m in members):
                settled = time.monotonic() - grown_at
                break
            time.sleep(0.1)
        a, b = members[0].partitions(), members[1].partitions()
        assert settled is not None, (
            f"the group never took the 6 partitions within {SETTLE_S:.0f} s of growing from 2: member "
            f"partitions {sorted(a)} and {sorted(b)}, states "
            f"{[str(m.consumer._coordinator.state) for m in members]} (the kafka-python leader stall)")
        time.sleep(2)
        producing.set()
        feeder.join(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if set(sent) <= set(seen):
                    break
            time.sleep(0.2)
        with lock:
            lost = len(set(sent) - set(seen))
            replayed = sum(n - 1 for n in seen.values() if n > 1)
        assert lost == 0, f"{lost} of {len(sent)} records never consumed after the rebalance"
        return {"settled_s": settled, "replayed": replayed, "sent": len(sent),
                "paused": float(any(m.paused for m in members))}
    finally:
        producing.set()
        for m in members:
            m.stopping.set()
        for m in members:
            m.thread.join(PAUSE_S + 10)
            m.consumer.close()
        producer.close()
        admin.delete_topics([topic], timeout_ms=30_000)
        admin.close()


@pytest.mark.parametrize("assignment", ["range", "cooperative-sticky"])
def test_partitions_added_to_a_topic_reach_a_group_whose_leader_was_away_from_poll(stack: str, assignment: str) -> None:
    """Two consumers of one group, a topic grown from 2 to 6 partitions under a steady stream, the
    leader away from poll() while its rejoin completes: every round the group takes all 6 partitions,
    one owner each, and every record is consumed (what a rebalance costs is printed)."""
    base = Settings()
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"assignment": assignment})})
    results = [_one_round(settings) for _ in range(ROUNDS)]
    for i, r in enumerate(results):
        print(f"\n{assignment} round {i}: settled {r['settled_s']:.1f} s after the growth (leader paused: {bool(r['paused'])}), "
              f"{r['replayed']:.0f} of {r['sent']:.0f} records consumed twice")
    assert any(r["paused"] for r in results), "the leader never paused: the rounds did not reproduce the race"
