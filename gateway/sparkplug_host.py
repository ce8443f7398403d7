"""The Sparkplug B host side of the gateway: births, deaths, aliases, sequence numbers, rebirths.

Topics are `spBv1.0/<group>/<type>/<edge node>[/<device>]`. The group becomes the substation,
the edge node the bay, and the device (or the edge node itself for node metrics) the device.
Metric names map to IEC 61850 point names: `MMXU1/TotW`, or a longer path ending in it
(`Inverter 3/MMXU1/TotW`), becomes `MMXU1.TotW`; a metric that maps to no LN.DO name (the same
check the device profiles pass, so `Inverter/Power` is not one) is set aside with its reason
while the message's other metrics are kept. DATA metrics may come without a datatype (Sparkplug
3.0 says they SHOULD NOT repeat it): the one their birth declared is applied. Times are checked
against what a store can hold and a plausibility window around now.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.sparkplug import (
    BOOLEAN,
    REBIRTH_METRIC,
    FrameError,
    Metric,
    Payload,
    decode_payload,
    encode_payload,
    numeric,
)
from gridverse.points import Point, Quality, Record, Source, TimeError, check_time_ns, is_ln_do_name

log = logging.getLogger(__name__)
NAMESPACE = "spBv1.0"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SparkplugError(ValueError):
    """A Sparkplug message the host cannot use; the message says why (it is set aside)."""


@dataclass
class EdgeNode:
    bd_seq: int | None = None
    next_seq: int | None = None
    aliases: dict[int, tuple[str, int]] = field(default_factory=dict)  # alias → (name, datatype)
    types: dict[tuple[str, str], int] = field(default_factory=dict)  # (device, metric name) → datatype
    known: dict[str, set[str]] = field(default_factory=dict)  # device ("" = node) → point names
    awaiting_rebirth: bool = True
    rebirths_requested: int = 0


def _control(metric_name: str) -> bool:
    """bdSeq, rebirth and other control or property metrics: not telemetry."""
    return metric_name in ("bdSeq", REBIRTH_METRIC) or metric_name.startswith(
        ("Node Control/", "Device Control/", "Properties/")
    )


def kind_of(node_birth: bool) -> str:
    return "NBIRTH" if node_birth else "DBIRTH"


def point_name(metric_name: str) -> str | None:
    parts = [p for p in metric_name.replace(".", "/").split("/") if p]
    if len(parts) >= 2 and is_ln_do_name(f"{parts[-2]}.{parts[-1]}"):
        return f"{parts[-2]}.{parts[-1]}"
    return None


class SparkplugHost:
    def __init__(
        self,
        site: str,
        publish: Callable[[str, bytes], None],
        *,
        rebirth_every_s: float = 5.0,
        max_future_s: float = 300.0,
        max_past_s: float = 10 * 365.25 * 86400,
    ) -> None:
        self.site = site
        self.publish = publish
        self.rebirth_every_s = rebirth_every_s
        self.max_future_s, self.max_past_s = max_future_s, max_past_s
        self.nodes: dict[tuple[str, str], EdgeNode] = {}
        self._last_rebirth: dict[tuple[str, str], float] = {}
        self.sequence_errors = 0
        self.rejected_metrics = 0

    def handle(self, topic: str, frame: bytes, received_ns: int) -> tuple[list[Record], list[str]]:
        """Points from one message, and reasons for metrics set aside. Raises SparkplugError for a
        message that cannot be used at all (bad topic or frame, data out of sequence)."""
        parts = topic.split("/")
        if len(parts) not in (4, 5) or parts[0] != NAMESPACE:
            raise SparkplugError(f"topic {topic!r:.80} is not spBv1.0/<group>/<type>/<edge node>[/<device>]")
        _, group, kind, edge = parts[:4]
        device = parts[4] if len(parts) == 5 else ""
        if not all(parts[1:]) or _CONTROL.search(topic):
            raise SparkplugError(f"topic {topic!r:.80}: an empty or control character in the group, node or device id")
        if kind in ("NCMD", "DCMD", "STATE"):
            return [], []  # commands (ours, too) and host states are not telemetry
        try:
            payload = decode_payload(frame)
        except FrameError as exc:
            raise SparkplugError(f"bad Sparkplug B frame on {kind}: {exc}") from None
        node = self.nodes.setdefault((group, edge), EdgeNode())
        if kind == "NBIRTH":
            return self._birth(group, edge, "", node, payload, received_ns, node_birth=True)
        if kind == "DBIRTH":
            self._check_seq(group, edge, node, payload, kind)
            return self._birth(group, edge, device, node, payload, received_ns, node_birth=False)
        if kind in ("NDATA", "DDATA"):
            self._check_seq(group, edge, node, payload, kind)
            return self._data(group, edge, device, node, payload, received_ns)
        if kind == "NDEATH":
            bd = next((numeric(m) for m in payload.metrics if m.name == "bdSeq"), None)
            if node.bd_seq is not None and bd is not None and int(bd) != node.bd_seq:
                stale = f"NDEATH of {edge} with bdSeq {int(bd)} belongs to an older session ({node.bd_seq}); ignored"
                return [], [stale]
            node.awaiting_rebirth = True
            return self._dead(group, edge, node, None, received_ns), []
        if kind == "DDEATH":
            self._check_seq(group, edge, node, payload, kind)
            return self._dead(group, edge, node, device, received_ns), []
        raise SparkplugError(f"unknown Sparkplug message type {kind!r}")

    # -- births and data ----------------------------------------------------------------------
    def _birth(
        self, group: str, edge: str, device: str, node: EdgeNode, payload: Payload, now: int, *, node_birth: bool
    ) -> tuple[list[Record], list[str]]:
        if payload.seq is not None and not 0 <= payload.seq <= 255:
            raise SparkplugError(f"{kind_of(node_birth)} of {edge}: seq {payload.seq} is not within 0..255")
        if node_birth:
            bd = next((numeric(m) for m in payload.metrics if m.name == "bdSeq"), None)
            node.bd_seq = None if bd is None else int(bd)
            node.aliases = {}
            node.types = {}
            node.known = {}
            node.next_seq = ((payload.seq or 0) + 1) % 256
            node.awaiting_rebirth = False
        elif node.awaiting_rebirth:
            self._request_rebirth(group, edge, node, "DBIRTH before its node's NBIRTH")
            raise SparkplugError(f"DBIRTH of {edge}/{device} before an NBIRTH; rebirth requested")
        for m in payload.metrics:
            if m.name:
                node.types[(device, m.name)] = m.datatype
                if m.alias is not None:
                    node.aliases[m.alias] = (m.name, m.datatype)
        return self._points(group, edge, device, node, payload, now)

    def _data(
        self, group: str, edge: str, device: str, node: EdgeNode, payload: Payload, now: int
    ) -> tuple[list[Record], list[str]]:
        for m in payload.metrics:
            declared: int | None = None
            if not m.name and m.alias is not None:
                known = node.aliases.get(m.alias)
                if known is None:
                    self._request_rebirth(group, edge, node, f"unknown alias {m.alias}")
                    raise SparkplugError(f"{edge}: alias {m.alias} was not declared in a birth; rebirth requested")
                m.name, declared = known
            elif m.name:
                declared = node.types.get((device, m.name))
            if m.datatype == 0 and declared:  # no datatype in the DATA message: the birth's applies
                m.resolve(declared)
            elif m.datatype == 0 and not m.is_null and not _control(m.name):
                self._request_rebirth(group, edge, node, f"metric {m.name!r:.60} without a datatype")
        return self._points(group, edge, device, node, payload, now)

    def _points(
        self, group: str, edge: str, device: str, node: EdgeNode, payload: Payload, now: int
    ) -> tuple[list[Record], list[str]]:
        rows, reasons = [], []
        for m in payload.metrics:
            if _control(m.name):
                continue
            name = point_name(m.name)
            value = numeric(m)
            if name is None:
                self.rejected_metrics += 1
                reasons.append(
                    f"metric {m.name!r:.60} maps to no IEC 61850 LN.DO name; name it "
                    "[<path>/]<LN class and instance>/<data object>, e.g. Inverter/MMXU1/TotW"
                )
                continue
            t_ms = m.timestamp if m.timestamp is not None else payload.timestamp
            try:
                t_ns = now if t_ms is None else check_time_ns(int(t_ms) * 1_000_000, now, **self._window())
            except TimeError as exc:
                self.rejected_metrics += 1
                reasons.append(f"metric {m.name!r:.60}: {exc}")
                continue
            text = m.value if isinstance(m.value, str) and value is None else ""
            if value is None and not m.is_null and not text:
                self.rejected_metrics += 1
                if m.datatype == 0:
                    why = "has no datatype, and no birth declared one (a rebirth is requested)"
                else:
                    why = f"{type(m.value).__name__} value {m.value!r:.40} is not a finite number"
                reasons.append(f"metric {m.name!r:.60}: {why}")
                continue
            quality = Quality.GOOD if value is not None or text else Quality.INVALID
            extra = {"text": text[:256]} if text else {}
            point = Point(
                self.site, group, edge, device or edge, name, Source.SPARKPLUG, t_ns, value, quality, "", extra
            )
            rows.append(point.to_record())
            node.known.setdefault(device, set()).add(name)
        return rows, reasons

    def _dead(self, group: str, edge: str, node: EdgeNode, device: str | None, now: int) -> list[Record]:
        """Every metric the dead node (or device) had: comm_fail, no value."""
        devices = [device] if device is not None else list(node.known)
        rows = []
        for dev in devices:
            for name in sorted(node.known.get(dev, ())):
                rows.append(
                    Point(
                        self.site, group, edge, dev or edge, name, Source.SPARKPLUG, now, None, Quality.COMM_FAIL
                    ).to_record()
                )
        return rows

    def _window(self) -> dict[str, float]:
        return {"max_future_s": self.max_future_s, "max_past_s": self.max_past_s}

    # -- sequence and rebirth -----------------------------------------------------------------
    def _check_seq(self, group: str, edge: str, node: EdgeNode, payload: Payload, kind: str) -> None:
        if node.awaiting_rebirth or node.next_seq is None:
            self._request_rebirth(group, edge, node, f"{kind} before a birth")
            raise SparkplugError(f"{kind} from {edge} before its NBIRTH; rebirth requested")
        if payload.seq is None or payload.seq != node.next_seq:
            self.sequence_errors += 1
            node.awaiting_rebirth = True
            self._request_rebirth(group, edge, node, f"seq {payload.seq} where {node.next_seq} was due")
            raise SparkplugError(
                f"{kind} from {edge}: seq {payload.seq} where {node.next_seq} was due "
                "(a message was lost or reordered); rebirth requested"
            )
        node.next_seq = (payload.seq + 1) % 256

    def _request_rebirth(self, group: str, edge: str, node: EdgeNode, why: str) -> None:
        key = (group, edge)
        now = time.monotonic()
        if now - self._last_rebirth.get(key, -1e9) < self.rebirth_every_s:
            return  # one request per edge node per interval, not one per message
        self._last_rebirth[key] = now
        node.rebirths_requested += 1
        log.warning("Sparkplug: asking %s/%s to rebirth (%s)", group, edge, why)
        command = Payload(
            timestamp=int(time.time() * 1000), metrics=[Metric(name=REBIRTH_METRIC, datatype=BOOLEAN, value=True)]
        )
        self.publish(f"{NAMESPACE}/{group}/NCMD/{edge}", encode_payload(command))
