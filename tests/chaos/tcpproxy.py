"""A TCP proxy that delays and stalls traffic on request: network delay and loss for a lane's MQTT
hop where `tc netem` is missing (kernels without sch_netem).

Loss on TCP is seen by applications as stalls (a lost segment waits for its retransmission) and,
at worst, as a dropped connection: while faulty, every chunk waits `delay` ± `jitter`, a share
`loss` of chunks waits an extra 0.2-1 s, and `reset()` cuts every open connection once.
"""
from __future__ import annotations

import asyncio
import random
import threading
import time


class TcpFaultProxy:
    """Listens on 127.0.0.1:`listen`, forwards to 127.0.0.1:`target`, in a thread of its own."""

    def __init__(self, listen: int, target: int, seed: int = 3) -> None:
        self.listen, self.target = listen, target
        self.rng = random.Random(seed)
        self.delay = self.jitter = self.loss = 0.0
        self.until = 0.0
        self.stalls = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        if not self.ready.wait(10):
            raise RuntimeError(f"TCP proxy on {listen} did not start")

    def faulty(self, seconds: float, delay: float = 0.04, jitter: float = 0.01, loss: float = 0.03) -> None:
        self.delay, self.jitter, self.loss, self.until = delay, jitter, loss, time.monotonic() + seconds

    def reset(self) -> None:
        """Cut every open connection (the clients reconnect)."""
        self.loop.call_soon_threadsafe(lambda: [w.transport.abort() for w in list(self.writers)])

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)

    def _wait(self) -> float:
        if time.monotonic() >= self.until:
            return 0.0
        wait = max(self.delay + self.rng.uniform(-self.jitter, self.jitter), 0.0)
        if self.rng.random() < self.loss:
            self.stalls += 1
            wait += self.rng.uniform(0.2, 1.0)
        return wait

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                wait = self._wait()
                if wait:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self.writers.difference_update((writer, up_writer))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.listen))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
