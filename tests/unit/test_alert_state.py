"""The alert state machine: one alert per (rule, entity), with for, hysteresis, reminders, ack, silences."""
from __future__ import annotations

import pytest
from kafka.partitioner.default import DefaultPartitioner, murmur2

from alerts.state import Alert, AlertBook, RulePolicy, Silence, alert_id, id_partition

S = 10**9


def obs(value: float, ts_s: float, *, breach: bool | None = None, entity: str = "st1", rule: str = "air.pm25_daily",
        threshold: float = 75.0) -> dict:
    return {"rule": rule, "entity": entity, "domain": "air", "site": entity, "severity": "major", "value": value,
            "threshold": threshold, "breach": value > threshold if breach is None else breach, "ts": int(ts_s * S)}


def kinds(result) -> list[str]:  # noqa: ANN001
    return [n.kind for n in result[1]]


def test_breach_fires_once_and_resolves_below_the_hysteresis_level() -> None:
    book = AlertBook({"air.pm25_daily": RulePolicy(clear_below=65)})
    assert kinds(book.observe(obs(90, 0), now=0)) == ["firing"]
    assert kinds(book.observe(obs(95, 3600), now=1)) == []          # still firing: no second notification
    assert kinds(book.observe(obs(70, 7200), now=2)) == []          # below the limit but above 65: still firing
    assert book.alerts["air.pm25_daily/st1"].state == "firing"
    assert kinds(book.observe(obs(60, 10800), now=3)) == ["resolved"]


def test_for_duration_keeps_a_short_breach_pending_and_its_recovery_is_a_persisted_transition() -> None:
    book = AlertBook({"air.pm25_daily": RulePolicy(for_s=7200)})
    pending, notes = book.observe(obs(90, 0), now=0)
    assert notes == [] and pending.state == "pending"
    cleared, notes = book.observe(obs(50, 3600), now=1)             # recovered before `for`
    assert notes == [] and cleared is pending and cleared.state == "cleared"   # returned: the router saves it
    restarted = AlertBook(book.policies, {k: Alert.from_dict(a.to_dict()) for k, a in book.alerts.items()})
    assert kinds(restarted.observe(obs(90, 10000), now=2)) == []   # a single breach after a restart waits `for`
    fired, notes = restarted.observe(obs(91, 17200), now=3)
    assert [n.kind for n in notes] == ["firing"] and fired.id != pending.id and fired.episode == pending.episode + 1


def test_ten_hours_away_give_one_reminder_that_says_how_many_were_missed() -> None:
    book = AlertBook({"*": RulePolicy(repeat_s=3600)})
    alert, _ = book.observe(obs(90, 0), now=0)
    (changed, notes), = book.tick(10 * 3600 + 5)
    assert [n.kind for n in notes] == ["reminder"] and notes[0].alert["missed_reminders"] == 9
    assert book.tick(10 * 3600 + 6) == [] and book.tick(10 * 3600 + 60) == []
    assert [n[0].kind for _, n in book.tick(11 * 3600)] == ["reminder"]   # the cadence goes on from the fire time


def test_escalation_after_a_long_outage_is_one_notification() -> None:
    book = AlertBook({"*": RulePolicy(repeat_s=600, escalate_after_s=3600)})
    alert, _ = book.observe(obs(90, 0), now=0)
    alert.severity = "minor"
    (changed, notes), = book.tick(5 * 3600)
    assert [n.kind for n in notes] == ["escalated"] and changed.severity == "critical"
    assert book.tick(5 * 3600 + 1) == []


def test_every_notification_has_its_own_idempotency_key_from_id_kind_and_sequence() -> None:
    book = AlertBook({"*": RulePolicy(repeat_s=60)})
    alert, (fired,) = book.observe(obs(90, 0), now=0)
    (_, (reminder,)), = book.tick(60)
    _, (acked,) = book.acknowledge(alert.id, "li", "on it", at=70)
    assert [fired.key, reminder.key, acked.key] == [f"{alert.id}:firing:1", f"{alert.id}:reminder:2",
                                                     f"{alert.id}:acknowledged:3"]


def test_the_first_acknowledgement_wins_and_later_ones_are_history_that_notifies_nobody() -> None:
    book = AlertBook({"*": RulePolicy()})
    alert, _ = book.observe(obs(90, 0), now=5)
    assert kinds(book.acknowledge(alert.id, "li", "on it", at=10)) == ["acknowledged"]
    assert book.acknowledge(alert.id, "li", "on it", at=20) == (None, [])   # forwarded by two routers
    assert kinds(book.acknowledge(alert.id, "mallory", "mine now", at=30)) == []
    assert book.acknowledge(alert.id, "mallory", "mine now", at=30) == (None, [])
    assert (alert.acked_by, alert.acked_at, alert.ack_comment) == ("li", 10, "on it")
    assert alert.ack_history == [{"by": "mallory", "at": 30, "comment": "mine now", "source": "cli"}]
    for i in range(50):
        book.acknowledge(alert.id, f"p{i}", "", at=40 + i)
    assert len(alert.ack_history) == 20 and alert.ack_history[-1]["by"] == "p49"


def test_an_acknowledgement_time_before_the_fire_time_counts_from_the_fire_time() -> None:
    book = AlertBook({"*": RulePolicy()})
    alert, _ = book.observe(obs(90, 0), now=1000)
    book.acknowledge(alert.id, "li", "", at=1)
    assert alert.acked_at == 1000


def test_compaction_forgets_only_closed_alerts_older_than_the_retention_and_ids_stay_unique() -> None:
    book = AlertBook({"*": RulePolicy()})
    first, _ = book.observe(obs(90, 0), now=1000)
    old_id = first.id
    book.observe(obs(50, 60), now=1100)                                  # resolved at 1100
    book.observe(obs(90, 0, entity="st2"), now=1100)                     # still firing
    assert book.compact(now=1100 + 3599, keep_s=3600) == []
    assert book.compact(now=1100 + 3600, keep_s=3600) == ["air.pm25_daily/st1"]
    assert list(book.alerts) == ["air.pm25_daily/st2"]
    again, notes = book.observe(obs(95, 7200), now=9000)
    assert kinds((again, notes)) == ["firing"] and again.id != old_id


@pytest.mark.parametrize("partitions", [1, 3, 6, 12])
def test_an_alert_id_names_the_partition_kafka_gives_the_alerts_observations(partitions: int) -> None:
    class Cluster:
        def topics(self) -> set:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set:
            return set(range(partitions))

        def available_partitions_for_topic(self, topic: str) -> set:
            return set(range(partitions))

    for entity in ("st1", "laoshan-pm-07", "湾区-3", "x" * 80):
        key = f"air.pm25_daily/{entity}"
        expected = DefaultPartitioner().partition("t", key, key.encode(), None, None, Cluster())
        assert id_partition(alert_id(key, 7), partitions) == expected == (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize("bad", ["", "abc", "1a2b3c4d5e6f", "1a2b3c4d5e6f-0", "1A2B3C4D5E6F-1", "../x-1", "1a2b3c4d5e6f-1/x"])
def test_a_malformed_alert_id_is_rejected_with_what_to_do(bad: str) -> None:
    with pytest.raises(ValueError, match="copy it from the notification"):
        id_partition(bad, 3)


def test_reminders_repeat_until_acknowledged() -> None:
    book = AlertBook({"*": RulePolicy(repeat_s=60)})
    alert, _ = book.observe(obs(90, 0), now=1000)
    assert [kinds(([], n)) for _, n in book.tick(1059)] == []
    assert [n[0].kind for _, n in book.tick(1060)] == ["reminder"]
    assert [n[0].kind for _, n in book.tick(1121)] == ["reminder"]
    assert kinds(book.acknowledge(alert.id, "li.wei", "crew dispatched", at=1130)) == ["acknowledged"]
    assert book.tick(5000) == []
    assert alert.acked_by == "li.wei" and alert.ack_comment == "crew dispatched"


def test_unacknowledged_alert_escalates_severity() -> None:
    book = AlertBook({"*": RulePolicy(repeat_s=10_000, escalate_after_s=300)})
    alert, _ = book.observe(obs(90, 0), now=0)
    (changed, notes), = book.tick(300)
    assert notes[0].kind == "escalated" and changed.severity == "critical"


def test_a_new_episode_gets_a_new_id() -> None:
    book = AlertBook({"*": RulePolicy()})
    first, _ = book.observe(obs(90, 0), now=0)
    first_id = first.id
    book.observe(obs(50, 10), now=1)
    second, notes = book.observe(obs(99, 20), now=2)
    assert [n.kind for n in notes] == ["firing"] and second.id != first_id


def test_older_observations_are_ignored() -> None:
    book = AlertBook({"*": RulePolicy()})
    book.observe(obs(90, 100), now=0)
    assert book.observe(obs(10, 50), now=1) == (None, [])
    assert book.alerts["air.pm25_daily/st1"].state == "firing"


def test_a_silence_mutes_matching_alerts_only_and_only_in_its_window() -> None:
    book = AlertBook({"*": RulePolicy()})
    book.silence(Silence("s1", {"site": "st1", "rule": "air.*"}, start=0, end=100))
    assert kinds(book.observe(obs(90, 0, entity="st1"), now=10)) == []
    assert kinds(book.observe(obs(90, 0, entity="st2"), now=10)) == ["firing"]
    assert book.alerts["air.pm25_daily/st1"].state == "firing"        # state is kept while muted
    assert kinds(book.observe(obs(10, 5, entity="st1"), now=200)) == ["resolved"]  # silence over
