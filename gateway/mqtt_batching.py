"""A paho client whose network thread works in batches: fewer wake-ups, reads and writes per
message, the same acknowledgement rule.

At a light load paho spends more on waking up than on the messages: its network thread wakes
for every message (a `select`, a pass through its loop, a context switch), reads each packet
with four or five `recv` calls (the type byte, the length bytes one at a time, the body), and
every acknowledgement queued from the spool's committer is a packet of its own plus a byte on
paho's socket pair to wake the thread. `BatchingClient` keeps paho's protocol handling and
changes only that:

- **reads** come from one buffered `recv` of up to 64 KiB, so the packets already waiting cost
  one system call, not five each;
- **wake-ups**: whenever it wakes, it handles every packet already waiting; when that was only a
  few (a light load), it waits up to `batch_s` before reading again, so a light stream is taken
  a handful of messages at a time. It never waits on something to send: a publish or a flush
  of acknowledgements wakes it at once through paho's socket pair, so the broker's in-flight
  window is not held up. Under load (at least LIGHT_PACKETS packets at a wake-up) it does not
  wait at all;
- **commits**: hooks around each pass's reads (`before_reading`, `after_reading`) let the gateway
  commit a light pass's messages to its spool on this thread, right after reading them, instead
  of handing them to the committer thread and being woken again for the acknowledgements;
- **acknowledgements** of QoS 1 messages (manual acknowledgement) are held by `ack` until
  `flush_acks`, which queues all of them as one write with one wake-up. The gateway flushes
  after each group commit (HistorianWriter.on_acknowledged), and the network thread flushes any
  still held whenever it runs.

Durability is unchanged: a message is acknowledged only after its points are on disk (committed
on this thread or by the committer); batching changes how many messages share a wake-up, a read
and a write. It relies on
paho internals (`_loop`, `_sock_recv`, `_out_packet`, `_sockpairR`, `_sockpairW`) of paho-mqtt 2.x: a test
with a real Mosquitto (tests/test_mqtt_batching.py) checks the behaviour, and a paho without
them makes the client fall back to paho's own path (`batching_supported`).
"""

from __future__ import annotations

import contextlib
import select
import struct
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK

#: packets read at one wake-up from which the load counts as heavy (no wait before the next read)
LIGHT_PACKETS = 64
#: packets read at one wake-up at most, so that queued acknowledgements go out in between
DRAIN_LIMIT = 2_000
#: bytes asked of the socket per read
READ_SIZE = 65_536

_SUCCESS = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
_PUBACK = struct.Struct("!BBH")


def batching_supported(client: mqtt.Client) -> bool:
    """Whether this paho has the internals the batching relies on (paho-mqtt 2.x)."""
    return all(hasattr(client, name) for name in ("_loop", "_sock_recv", "_packet_read", "_out_packet", "_sockpairR"))


class BatchingClient(mqtt.Client):
    """paho's client with a batching network loop (see the module)."""

    def __init__(self, *args: Any, batch_s: float = 0.1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._supported = batching_supported(self)
        self.batch_s = batch_s
        #: called on the network thread before each pass reads, and after it with whether the
        #: load was light (the gateway commits a light pass's messages right there: no hand-over)
        self.before_reading: Callable[[], None] | None = None
        self.after_reading: Callable[[bool], None] | None = None
        self._held_acks: list[int] = []
        self._acks_lock = threading.Lock()
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None

    @property
    def batch_s(self) -> float:
        """Seconds the network thread waits after a light wake-up (0: paho's own behaviour, which
        is also what a paho without the internals batching needs gets, whatever is set)."""
        return self._batch_s

    @batch_s.setter
    def batch_s(self, seconds: float) -> None:
        self._batch_s = seconds if self._supported else 0.0

    # -- acknowledgements ------------------------------------------------------------------
    def ack(self, mid: int, qos: int) -> mqtt.MQTTErrorCode:
        """Hold a QoS 1 acknowledgement until `flush_acks` (or the network thread's next pass)."""
        if qos != 1 or not self._manual_ack or self.batch_s <= 0:
            return super().ack(mid, qos)
        with self._acks_lock:
            self._held_acks.append(mid)
        return _SUCCESS

    def flush_acks(self) -> None:
        """Queue every held acknowledgement as one write and wake the network thread once."""
        with self._acks_lock:
            mids, self._held_acks = self._held_acks, []
        if not mids:
            return
        packet = b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid in mids)
        self._out_packet.append(
            {
                "command": PUBACK,
                "mid": mids[-1],
                "qos": 0,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": None,
            }
        )
        wake = getattr(self, "_sockpairW", None)
        if wake is not None:
            # the pair full (a wake-up is pending anyway) or closed (the next connection flushes)
            with contextlib.suppress(BlockingIOError, OSError):
                wake.send(b"0")

    # -- reads -------------------------------------------------------------------------------
    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: nothing buffered belongs to it
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(READ_SIZE)  # BlockingIOError when nothing is there; b"" at EOF
            if len(data) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return data
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def _buffered(self) -> bool:
        return self._rsock is self._sock and self._rpos < len(self._rbuf)

    def _readable(self) -> bool:
        """Bytes of a packet are waiting: in this client's buffer, the TLS layer or the kernel."""
        if self._buffered():
            return True
        sock = self._sock
        if sock is None:
            return False
        pending = getattr(sock, "pending", None)
        if pending is not None and pending() > 0:
            return True
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, TypeError, ValueError):  # closed under us: paho's next pass reports it
            return False

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self, timeout: float = 1.0) -> mqtt.MQTTErrorCode:
        if self.batch_s <= 0:
            return super()._loop(timeout)
        self.flush_acks()
        read = 0
        if self.before_reading is not None:
            self.before_reading()
        try:
            rc = self._drain()  # what is buffered first: paho's select cannot see it
            if rc != _SUCCESS:
                return rc
            rc = super()._loop(timeout)
            if rc != _SUCCESS or self._sock is None:
                return rc
            while read < DRAIN_LIMIT and self._readable():
                rc = self.loop_read()
                read += 1
                if rc != _SUCCESS or self._sock is None:
                    return rc
        finally:
            if self.after_reading is not None:
                self.after_reading(read < LIGHT_PACKETS)
        self.flush_acks()
        if read < LIGHT_PACKETS:
            self._wait_for_output(self.batch_s)
        return rc

    def _drain(self) -> mqtt.MQTTErrorCode:
        rc = _SUCCESS
        while self._buffered() and self._sock is not None:
            rc = self.loop_read()
            if rc != _SUCCESS:
                break
        return rc

    def _wait_for_output(self, seconds: float) -> None:
        """Send what is queued, then wait up to `seconds` or until something more is queued (paho
        writes a byte to its socket pair for every packet queued from another thread, flush_acks
        one per flush). The pair is emptied first: a byte for a packet already sent must not end
        the wait at once."""
        wake = self._sockpairR
        if wake is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                wake.recv(10_000)
        # queued before the pair was emptied: send it now; if the socket takes no more now,
        # paho's select waits for it to drain instead
        if self.want_write() and (self.loop_write() != _SUCCESS or self.want_write()):
            return
        try:
            select.select([wake] if wake is not None else [], [], [], seconds)
        except (OSError, TypeError, ValueError):
            return
