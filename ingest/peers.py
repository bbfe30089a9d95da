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


def status_payload(client_id: str, state: str, filters: tuple[str, ...]) -> bytes:
    """A status message: the state, and the filters the bridge's session is subscribed to (an adopter
    unsubscribes exactly these)."""
    return json.dumps({"client_id": client_id, "state": state, "filters": list(filters)}).encode()


@dataclass
class Peer:
    """What this bridge knows of one bridge of its group."""

    client_id: str
    online: bool
    since: float                     # monotonic time this bridge saw the current state begin
    filters: tuple[str, ...]


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
            except (ValueError, KeyError, TypeError):
                return
            known = self._peers.get(client_id)
            if known is None or known.online != online:
                self._peers[client_id] = Peer(client_id, online, now, filters)
            else:
                known.filters = filters

    def online(self, client_id: str) -> bool:
        """True when `client_id` last said it is online."""
        with self._lock:
            peer = self._peers.get(client_id)
            return peer is not None and peer.online

    def due(self, self_id: str, now: float, grace: float) -> list[Peer]:
        """Peers offline for at least `grace` seconds whose session this bridge is the one to adopt:
        the live bridges (this one included) sorted by id, the peer's CRC32 picks one of them."""
        with self._lock:
            live = sorted({p.client_id for p in self._peers.values() if p.online} | {self_id})
            return [p for p in self._peers.values()
                    if not p.online and p.client_id != self_id and now - p.since >= grace
                    and live[zlib.crc32(p.client_id.encode()) % len(live)] == self_id]
