"""Storm control: a burst of one rule's firing alerts becomes one storm alert that holds back the flood."""
from __future__ import annotations

from alerts.channels import Delivery
from alerts.messages import render
from alerts.router import AlertConfig
from alerts.state import Notification
from alerts.storm import StormWatch


def note(entity: str, kind: str = "firing", rule: str = "parking.offline", severity: str = "minor") -> Notification:
    return Notification(kind, {"rule": rule, "entity": entity, "site": f"lot{entity[-1]}", "domain": "parking",
                               "severity": severity}, f"{entity}:{kind}")  # type: ignore[arg-type]


def watch(threshold: int = 3, window: float = 300) -> StormWatch:
    return StormWatch(AlertConfig.model_validate({"rules": {"*": {"storm_threshold": threshold,
                                                                  "storm_window": window}}}))


def test_the_threshold_th_firing_alert_starts_a_storm_that_holds_back_the_rest_of_the_rule_only() -> None:
    w = watch()
    out = w.admit(0, [note(f"s{i}") for i in range(10)], 1.0, 100.0)
    assert [n.key for n in out[:2]] == ["s0:firing", "s1:firing"] and len(out) == 3
    storm = out[2]
    assert storm.alert["storm"] and storm.alert["value"] == 3 and "3 alerts of parking.offline" in storm.alert["title_en"]
    other = w.admit(1, [note("x", rule="air.pm25_daily"), note("s1", "acknowledged"), note("s2", "reminder")], 2, 101)
    assert [n.key for n in other] == ["x:firing", "s1:acknowledged"]   # other rules and acks pass; reminders held


def test_firing_alerts_spread_over_more_than_the_window_make_no_storm() -> None:
    w = watch(threshold=3, window=10)
    assert all(not n.alert.get("storm") for t in range(6) for n in w.admit(0, [note(f"s{t}")], t * 6.0, t * 6.0))


def test_a_storm_ends_after_a_quiet_window_with_its_counts_and_the_rule_notifies_again() -> None:
    w = watch(threshold=2, window=10)
    w.admit(0, [note(f"s{i}") for i in range(5)], 0.0, 100.0)
    w.admit(0, [note("s9", severity="critical")], 5.0, 105.0)
    assert w.ended(14.0, 114.0, {0}) == []
    ((p, over),) = w.ended(15.0, 115.0, {3})          # its partition was revoked: another owned one
    assert p == 3 and over.kind == "resolved" and over.alert["value"] == 6 and over.alert["severity"] == "critical"
    assert over.alert["held"] == {"firing": 4} and over.alert["site_count"] == 5   # s1 (which started it) .. s9
    assert [n.key for n in w.admit(0, [note("t1")], 20.0, 120.0)] == ["t1:firing"]


def test_a_storm_notification_renders_like_any_alert_when_it_starts_and_ends() -> None:
    # the storm's own alert is a whole alert for every channel's message (a field missing from it kept
    # every channel retrying the storm alert for ever, while the flood it held back never came)
    w = watch(threshold=2, window=10)
    started = [n for n in w.admit(0, [note(f"s{i}") for i in range(4)], 0.0, 100.0) if n.alert.get("storm")]
    ((_, over),) = w.ended(20.0, 120.0, {0})
    for storm in (*started, over):
        body = render(Delivery("ops", [storm], [(0, 0)]))
        assert "parking.offline" in body["text_en"] and "parking.offline" in body["text_zh"]
