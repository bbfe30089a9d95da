"""The alert state machine: one alert per (rule, entity), with for, hysteresis, reminders, ack, silences."""
from __future__ import annotations

from alerts.state import AlertBook, RulePolicy, Silence

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


def test_for_duration_keeps_a_short_breach_pending() -> None:
    book = AlertBook({"air.pm25_daily": RulePolicy(for_s=7200)})
    assert kinds(book.observe(obs(90, 0), now=0)) == []
    assert book.alerts["air.pm25_daily/st1"].state == "pending"
    assert kinds(book.observe(obs(50, 3600), now=1)) == []          # recovered before `for`: forgotten
    assert "air.pm25_daily/st1" not in book.alerts
    book.observe(obs(90, 10000), now=2)
    assert kinds(book.observe(obs(91, 17200), now=3)) == ["firing"]


def test_reminders_repeat_until_acknowledged() -> None:
    book = AlertBook({"*": RulePolicy(repeat_s=60)})
    alert, _ = book.observe(obs(90, 0), now=1000)
    assert [kinds(([], n)) for _, n in book.tick(1059)] == []
    assert [n[0].kind for _, n in book.tick(1060)] == ["reminder"]
    assert [n[0].kind for _, n in book.tick(1121)] == ["reminder"]
    assert kinds(book.acknowledge(alert.id, "li.wei", "crew dispatched", now=1130)) == ["acknowledged"]
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
