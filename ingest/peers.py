"""Which bridges of a share group are alive, and which dead peer's session this bridge must adopt.

Every bridge keeps a retained status on `<root>/<group>/<client_id>`: "online" when it connects, and
"offline" as its Last Will (published by the broker when the connection dies without a DISCONNECT)
or on a planned stop. A peer offline for longer than the grace period still owns a persistent
session that Mosquitto 2.0.11 keeps feeding with its share of the stream; exactly one live bridge
(chosen the same way by all of them, from the set of live bridges) adopts that session. Pure logic,
no I/O: the bridge feeds it status messages and asks it what to do.
"""
from __future__ import annotations

import json
import threading
import zlib
from dataclasses import dataclass

STATUS_ROOT = "smartcity/bridge"


def status_topic(group: str, client_id: str) -> str:
    """The retained status topic of one bridge."""
    return f"{STATUS_ROOT}/{group}/{client_id}"


def status_payload(client_id: str, state: str, filters: tuple[str, ...], own: tuple[str, ...] | None = None,
                   instance: str = "") -> bytes:
    """A status message: the state, the subscriptions of the bridge's session as full topic filters
    (`$share/<group>/...` or plain: an adopter unsubscribes exactly these and takes the plain ones over),
    and `own`, those of them its configuration gives it (the rest it took over from dead peers);
    `instance` tells two processes with one client id apart."""
    return json.dumps({"client_id": client_id, "state": state, "filters": list(filters),
                       "own": list(filters if own is None else own), "instance": instance}).encode()


@dataclass
class Peer:
    """What this bridge knows of one bridge of its group."""

    client_id: str
    online: bool
    since: float                     # monotonic time this bridge saw the current state begin
    filters: tuple[str, ...]         # every subscription of its session
    own: tuple[str, ...] = ()        # those its configuration gives it
    updated: float = 0.0             # monotonic time of its latest status

    @property
    def taken(self) -> set[str]:
        """Plain filters it holds for dead peers."""
        return {f for f in self.filters if f not in self.own and not f.startswith("$share/")}


class PeerTable:
    """The group's bridges as their retained statuses tell (thread-safe: fed by paho's network thread)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._peers: dict[str, Peer] = {}
        self._lock = threading.Lock()

    def update(self, topic: str, payload: bytes, now: float) -> None:
        """Take in one status message; an empty payload (a cleared status) forgets the peer, a status
        that cannot be read is ignored (bridges write these topics, the ACL lets nobody else)."""
        client_id = topic.rsplit("/", 1)[-1]
        with self._lock:
            if not payload:
                self._peers.pop(client_id, None)
                return
            try:
                doc = json.loads(payload)
                online = doc["state"] == "online"
                filters = tuple(str(f) for f in doc["filters"])
                own = tuple(str(f) for f in doc.get("own", filters))
            except (ValueError, KeyError, TypeError):
                return
            known = self._peers.get(client_id)
            if known is not None and not online:
                # A Last Will was fixed at connect time: the session may hold more (filters taken over since).
                filters = tuple(dict.fromkeys(filters + known.filters))
            if known is None or known.online != online:
                self._peers[client_id] = Peer(client_id, online, now, filters, own, now)
            else:
                known.filters, known.own, known.updated = filters, own, now

    def forget(self, client_id: str) -> None:
        """Drop a peer whose status we cleared ourselves (its session is gone)."""
        with self._lock:
            self._peers.pop(client_id, None)

    def updated(self, client_id: str) -> float:
        """When the latest status of `client_id` arrived (monotonic; -inf when none is known)."""
        with self._lock:
            peer = self._peers.get(client_id)
            return peer.updated if peer is not None else float("-inf")

    def online(self, client_id: str) -> bool:
        """True when `client_id` last said it is online."""
        with self._lock:
            peer = self._peers.get(client_id)
            return peer is not None and peer.online

    def overlapping(self, self_id: str, filters: tuple[str, ...]) -> dict[str, list[str]]:
        """Live peers subscribed plainly to one of our plain `filters`: each such message is forwarded twice."""
        mine = {f for f in filters if not f.startswith("$share/")}
        with self._lock:
            found = {p.client_id: sorted(mine & set(p.filters)) for p in self._peers.values()
                     if p.online and p.client_id != self_id}
        return {k: v for k, v in found.items() if v}

    def to_give_back(self, self_id: str, taken: set[str], skip: set[str]) -> dict[str, str]:
        """Which of the plain filters we took over (`taken`) to unsubscribe -> the live peer that keeps
        it: one whose configuration has it (it is back), or, when two of us took the same filter, the
        one with the lower id. Peers in `skip` (being adopted) do not count."""
        with self._lock:
            live = [p for p in self._peers.values() if p.online and p.client_id != self_id and p.client_id not in skip]
            out = {f: p.client_id for p in live if p.client_id < self_id for f in p.taken & taken}
            out.update({f: p.client_id for p in live for f in p.own if f in taken})
            return out

    def due(self, self_id: str, now: float, grace: float) -> list[Peer]:
        """Peers offline for at least `grace` seconds whose session this bridge is the one to adopt:
        the live bridges (this one included) sorted by id, the peer's CRC32 picks one of them."""
        with self._lock:
            live = sorted({p.client_id for p in self._peers.values() if p.online} | {self_id})
            return [p for p in self._peers.values()
                    if not p.online and p.client_id != self_id and now - p.since >= grace
                    and live[zlib.crc32(p.client_id.encode()) % len(live)] == self_id]
