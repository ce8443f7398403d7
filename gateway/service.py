"""The gateway service: pollers and the MQTT subscriber feeding one historian writer, each of its
long-running threads and tasks supervised by a watchdog (dead or stuck: reported, restarted)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from gateway.metrics import GatewayMetrics
from gateway.modbus_poller import DevicePoller, RtuConnection
from gateway.mqtt_ingest import MqttIngest
from gateway.northbound import normalised_messages
from gateway.spool import Spool, SpoolBatch
from gateway.writer import HistorianWriter, OnDurable
from gridverse.config import Settings
from gridverse.historian import Historian
from gridverse.points import Record
from gridverse.schema import Alarm, AlarmRule, Severity, alarm_message, alarm_record
from gridverse.watchdog import DEFAULT_MISSES, Watchdog, Worker, in_daemon_thread

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings, historian: Historian, *, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        cfg = settings.gateway
        sp = cfg.spool
        self.spool = Spool(
            sp.path,
            max_points=sp.max_points,
            policy=sp.policy,
            warn_fraction=sp.warn_fraction,
            synchronous=sp.synchronous,
        )
        self.writer = HistorianWriter(
            historian,
            self.spool,
            flush_interval_s=cfg.flush_interval_s,
            commit_max_delay_s=cfg.commit_max_delay_s,
            flush_points=sp.flush_points,
            batch_points=sp.batch_points,
        )
        self.connections = [RtuConnection(cfg.reach(sub), cfg) for sub in settings.site.substations]
        self.metrics = GatewayMetrics(registry)
        self.pollers = [
            DevicePoller(
                settings.site.name,
                sub,
                dev,
                settings.profiles[dev.profile],
                conn,
                cfg,
                self._sink_records,
                on_poll=self._observe_poll,
            )
            for sub, conn in zip(settings.site.substations, self.connections, strict=True)
            for dev in sub.devices
        ]
        self.mqtt = MqttIngest(settings.mqtt, settings.site, cfg, self._sink_records, self._reject)
        self.writer.on_room = self.mqtt.request_redelivery  # what a full spool refused comes again
        self.writer.on_acknowledged = self.mqtt.client.flush_acks  # a group's MQTT acknowledgements in one write
        # a light network pass commits its messages on the MQTT thread; a heavy one wakes the committer
        self.mqtt.client.before_reading = self.writer.begin_batch
        self.mqtt.client.after_reading = self.writer.end_batch
        self.writer.on_written = self._count_out
        self.metrics.bind(self)
        self.watchdog = Watchdog("gateway", registry=self.metrics.registry)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._workers: dict[str, Worker] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._spool_alarm = False
        self._points_in: dict[str, Counter] = {}  # the points_in counter of each source

    def _sink_records(self, records: list[Record], on_durable: OnDurable | None = None) -> None:
        """One submission (a poll, an MQTT message) of one source: counted by that source."""
        if records:
            source = records[0].tags.get("source", "?")
            counter = self._points_in.get(source)
            if counter is None:  # labels() per message costs more than the rest of the counting
                counter = self._points_in[source] = self.metrics.points_in.labels(source)
            counter.inc(len(records))
            if self.settings.gateway.northbound:
                on_durable = self._republish_then(records, on_durable)
        self.writer.submit_records(records, on_durable)

    def _republish_then(self, records: list[Record], on_durable: OnDurable | None) -> OnDurable:
        """Once the points are in the spool: republish them normalised, then acknowledge upstream
        (a crash in between redelivers the message: at least once, like the store)."""

        def durable() -> None:
            for where, body in normalised_messages(self.settings.mqtt, records):
                self.mqtt.client.publish(where, body, qos=self.settings.mqtt.qos)
            if on_durable is not None:
                on_durable()

        return durable

    def _reject(self, records: list[Record], on_durable: OnDurable | None = None) -> None:
        if records:
            self.metrics.rejected.labels(records[0].tags.get("source", "?")).inc(len(records))
        self.writer.submit_records(records, on_durable)

    def _observe_poll(self, device: str, seconds: float) -> None:
        self.metrics.poll_latency.labels(device).observe(seconds)
        worker = self._workers.get(f"poller:{device}")
        if worker is not None:
            worker.ok()

    def _count_out(self, batches: Sequence[SpoolBatch], _started_ns: int, _written_ns: int) -> None:
        by_source: dict[str, int] = {}
        for b in batches:
            by_source[b.source] = by_source.get(b.source, 0) + b.points
        for source, points in by_source.items():
            self.metrics.points_out.labels(source).inc(points)

    async def start(self) -> None:
        """Start the writer, the MQTT subscriber, one task per device and the spool watch, each
        registered with the watchdog (started by the caller, or by `supervise()`)."""
        self._loop = asyncio.get_running_loop()
        self._started = True
        _tune_gc()
        self.writer.start()
        self.mqtt.start()
        self._supervise_threads()
        for poller in self.pollers:
            budget = self._poll_budget_s(poller)
            self._supervise_task(f"poller:{poller.device.name}", poller.run, stuck_after_s=budget)
        self._supervise_task("spool-watch", self._watch_spool, stuck_after_s=None)

    def supervise(self) -> None:
        """Start checking the workers (the stack does this for every part at once)."""
        self.watchdog.start()

    def _supervise_threads(self) -> None:
        client = self.mqtt.client

        def restart_mqtt_loop() -> None:
            client.loop_start()  # paho clears its thread when it dies; this starts a new one
            redeliver = getattr(self.mqtt, "request_redelivery", None)
            if callable(redeliver):  # what the dead loop had received unacknowledged comes again
                redeliver()

        # paho's network thread: a callback that raised ends it, and nothing else would notice
        def paho_alive() -> bool:  # (a reconnect asked for by request_redelivery() stops it briefly)
            return _alive(getattr(client, "_thread", None)) or bool(getattr(self.mqtt, "_reconnecting", False))

        self.watchdog.add("mqtt-loop", alive=paho_alive, restart=restart_mqtt_loop)
        threads = getattr(self.writer, "threads", None)
        named = threads() if callable(threads) else {}
        if not named:  # the writer's own two threads (it offers no accessor for them yet)
            named = {"spool-committer": getattr(self.writer, "_committer", None)}
            named["historian-drainer"] = getattr(self.writer, "_drainer", None)
        restart = getattr(self.writer, "restart", None)  # only through a public method of its owner
        restart = restart if callable(restart) else None
        for name, thread in named.items():
            if thread is not None:
                self.watchdog.add(name, alive=partial(_alive, thread), restart=restart)

    def _poll_budget_s(self, poller: DevicePoller) -> float:
        """How long a device's poll may take at worst: every block of every device on its RTU
        (they take turns on one connection) timing out on every retry, plus a few periods."""
        cfg = self.settings.gateway
        same_rtu = [p for p in self.pollers if p.connection is poller.connection]
        blocks = sum(sum(len(b) for b in p._group_blocks.values()) for p in same_rtu)
        periods = [poller.profile.period_of(g, cfg.poll_interval_s) for g in poller._group_blocks] or [1.0]
        return DEFAULT_MISSES * min(periods) + blocks * (cfg.retries + 1) * cfg.timeout_s

    def _supervise_task(self, name: str, make: Callable[[], Coroutine[Any, Any, None]], stuck_after_s: float | None):
        """Run `make()` as a task; a task that ends (it never should) is logged with its traceback,
        counted and restarted with back-off by the watchdog; a stuck one is cancelled and restarted."""
        assert self._loop is not None
        loop = self._loop

        def spawn() -> None:
            old = self._tasks.get(name)
            if old is not None and not old.done():
                old.cancel()
            task = loop.create_task(make(), name=name)
            task.add_done_callback(ended)
            self._tasks[name] = task

        def ended(task: asyncio.Task[None]) -> None:
            if task.cancelled():
                return  # stopped on purpose (shutdown, or a restart of a stuck one)
            exc = task.exception()
            reason = f"{type(exc).__name__}: {exc}" if exc else "returned"
            if exc is not None:
                worker.failed(exc)  # logged once with the traceback, counted
            worker.died(reason)

        def restart() -> None:  # called from the watchdog's thread
            if loop.is_closed():
                return
            loop.call_soon_threadsafe(spawn)

        worker = self.watchdog.add(
            name,
            alive=lambda: name in self._tasks and not self._tasks[name].done(),
            restart=restart,
            stuck_after_s=stuck_after_s,
            restart_when_stuck=True,
            logger=log,
        )
        self._workers[name] = worker
        spawn()

    async def _watch_spool(self) -> None:
        """Alarm (log, spool, publish) once when the spool passes its warning level, clear once."""
        while True:
            await asyncio.sleep(1.0)
            filling = self.spool.filling()
            if filling == self._spool_alarm:
                continue
            self._spool_alarm = filling
            depth, limit = self.spool.depth(), self.spool.max_points
            if filling:
                message = (
                    f"spool {depth} of {limit} points ({depth / limit:.0%}); the historian has been "
                    f"unreachable for {self.spool.oldest_age_s():.0f} s"
                )
            else:
                message = "spool back below its warning level"
            (log.error if filling else log.info)("gateway: %s", message)
            # through the spool (the store may be the reason it fills) and at once over MQTT
            alarm = Alarm(AlarmRule.SPOOL, "", "gateway", "spool", Severity.CRITICAL, message, float(depth))
            record = alarm_record(self.settings.site.name, alarm, time.time_ns(), filling)
            self.writer.submit_records([record])
            self.mqtt.client.publish(*alarm_message(self.settings.mqtt, record), qos=1)

    async def stop(self, timeout: float = 3.0) -> None:
        """Stop polling and subscribing, commit what was received, drain what the store takes
        within `timeout` (the rest stays in the durable spool for the next start)."""
        self.watchdog.stop()
        if not self._started:  # stopped during the stack's start-up, before this part began
            self.spool.close()
            return
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self.connections:
            conn.close()
        # Off the loop (it may host the embedded broker), in daemon threads: a part that hangs
        # delays neither the others nor the process's exit.
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(in_daemon_thread(self.mqtt.stop), max(0.2, min(2.0, timeout / 2)))
        except TimeoutError:
            log.warning("the MQTT client did not disconnect in time; unacknowledged messages come again")
        remaining = max(0.5, deadline - time.monotonic())
        try:  # the writer's stop joins two threads, then drains: each step gets a third
            await asyncio.wait_for(in_daemon_thread(self.writer.stop, remaining / 3), remaining)
        except TimeoutError:
            log.error(
                "the writer did not finish within %.1f s; the spool keeps what it committed, and what "
                "was not committed was not acknowledged (MQTT sends it again)",
                remaining,
            )
            return  # not closed under the writer's feet: the spool is durable as it stands
        self.spool.close()

    def device_status(self) -> dict[str, dict[str, object]]:
        return {
            p.device.name: {
                "up": p.status.up,
                "polls": p.status.polls,
                "failures": p.status.failures,
                "last_error": p.status.last_error,
            }
            for p in self.pollers
        }


def _tune_gc() -> None:
    """Each point is a record and a dict of fields that live until their group commit (up to
    commit_max_delay_s): at tens of thousands a second they outlive the young generations and set
    off full collections of the whole heap, under Python's default thresholds several a second.
    What start-up built is frozen (it is never garbage), and the young generation is collected
    every 20,000 allocations instead of 700. Process-wide; cycles are still collected."""
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 20_000), max(gen1, 20), max(gen2, 20))


def _alive(thread: threading.Thread | None) -> bool:
    return thread is not None and thread.is_alive()
