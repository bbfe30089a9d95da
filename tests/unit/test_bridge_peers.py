"""Which dead peer a bridge adopts: exactly one live bridge per dead peer, only after the grace period."""
from __future__ import annotations

from ingest.peers import PeerTable, status_payload, status_topic

FILTERS = ("city/+/+/+/up",)


def table(states: dict[str, str], at: float = 0.0) -> PeerTable:
    peers = PeerTable("g")
    for client_id, state in states.items():
        peers.update(status_topic("g", client_id), status_payload(client_id, state, FILTERS), at)
    return peers


def test_a_peer_offline_for_less_than_the_grace_period_is_not_adopted() -> None:
    peers = table({"a": "online", "b": "offline"}, at=100.0)
    assert peers.due("a", now=159.0, grace=60) == []
    assert [p.client_id for p in peers.due("a", now=160.0, grace=60)] == ["b"]


def test_exactly_one_live_bridge_adopts_each_dead_peer() -> None:
    states = {"a": "online", "b": "online", "c": "online"} | {f"dead{i}": "offline" for i in range(30)}
    peers = table(states)
    adopters: dict[str, list[str]] = {}
    for live in ("a", "b", "c"):
        for peer in peers.due(live, now=100.0, grace=60):
            adopters.setdefault(peer.client_id, []).append(live)
    assert sorted(adopters) == sorted(f"dead{i}" for i in range(30))
    assert all(len(who) == 1 for who in adopters.values())
    assert len({who[0] for who in adopters.values()}) > 1  # the work is spread


def test_a_bridge_never_adopts_itself_nor_a_peer_that_came_back() -> None:
    peers = table({"a": "offline", "b": "offline"})
    assert [p.client_id for p in peers.due("a", now=100.0, grace=60)] == ["b"]
    peers.update(status_topic("g", "b"), status_payload("b", "online", FILTERS), 90.0)
    assert peers.due("a", now=100.0, grace=60) == [] and peers.online("b")


def test_the_grace_period_restarts_when_a_peer_goes_offline_again() -> None:
    peers = table({"b": "offline"}, at=0.0)
    peers.update(status_topic("g", "b"), status_payload("b", "online", FILTERS), 50.0)
    peers.update(status_topic("g", "b"), status_payload("b", "offline", FILTERS), 80.0)
    assert peers.due("a", now=100.0, grace=60) == []
    assert len(peers.due("a", now=140.0, grace=60)) == 1


def test_a_cleared_or_unreadable_status_adopts_nothing() -> None:
    peers = table({"b": "offline"})
    peers.update(status_topic("g", "b"), b"", 1.0)
    peers.update(status_topic("g", "c"), b"not json", 1.0)
    peers.update(status_topic("g", "d"), b'{"state": "offline"}', 1.0)
    assert peers.due("a", now=1000.0, grace=60) == []


def test_the_adopter_learns_the_filters_to_unsubscribe() -> None:
    peers = table({"b": "offline"})
    assert peers.due("a", now=100.0, grace=60)[0].filters == FILTERS


def test_a_last_will_keeps_the_filters_the_peer_took_over_after_it_connected() -> None:
    peers = PeerTable("g")
    peers.update(status_topic("g", "b"), status_payload("b", "online", ("city/air/#", "city/fire/#")), 0.0)
    peers.update(status_topic("g", "b"), status_payload("b", "offline", ("city/air/#",)), 10.0)  # its will
    assert peers.due("a", now=100.0, grace=60)[0].filters == ("city/air/#", "city/fire/#")


def test_plain_filters_held_by_two_live_bridges_are_reported_shared_ones_are_not() -> None:
    peers = PeerTable("g")
    peers.update(status_topic("g", "b"), status_payload("b", "online", ("city/air/#", "$share/g/x/#")), 0.0)
    peers.update(status_topic("g", "c"), status_payload("c", "offline", ("city/fire/#",)), 0.0)
    assert peers.overlapping("a", ("city/air/#", "city/fire/#", "$share/g/x/#")) == {"b": ["city/air/#"]}
    assert peers.overlapping("b", ("city/air/#",)) == {}


def test_a_taken_filter_goes_back_to_its_owner_or_to_the_lower_id_of_two_takers() -> None:
    peers = PeerTable("g")
    f = "v3/+/devices/+/up"
    # c took f too (it lists f, but not as its own): of two takers, the lower id keeps it
    peers.update(status_topic("g", "c"), status_payload("c", "online", ("city/a", f), ("city/a",)), 0.0)
    assert peers.to_give_back("b", {f}, set()) == {}              # b < c: b keeps it
    assert peers.to_give_back("d", {f}, set()) == {f: "c"}        # d > c: d lets go
    # the owner is back (f is in its own list): every taker gives it back, unless it is being adopted
    peers.update(status_topic("g", "e"), status_payload("e", "online", (f,)), 0.0)
    assert peers.to_give_back("b", {f, "x"}, set()) == {f: "e"}
    assert peers.to_give_back("b", {f}, {"e"}) == {}
