"""Health tells the truth: a poll task that crashes is logged once, counted, restarted and
reported by `/health` while it is down (real pymodbus RTU, real Mosquitto); a dead thread is
restarted, a stuck one reported; a failing loop logs once and once again when it recovers."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fieldsim.modbus_rtu import DeviceImage, RtuServer
from gridverse.settings import load_settings
from gridverse.stack import Stack
from gridverse.watchdog import Watchdog
from tests.helpers import config_dir
from tests.services import free_port, mosquitto


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def _until(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} within {timeout} s")


def test_a_crashed_poll_task_is_logged_counted_restarted_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics_port = free_port()

    def fast(doc: dict) -> None:
        doc["gateway"].update(metrics_port=metrics_port, poll_interval_s=0.2, timeout_s=0.3, retries=0)

    main = config_dir(tmp_path, fast)
    base = f"http://127.0.0.1:{metrics_port}"
    with mosquitto(tmp_path) as port:
        settings = load_settings(main, environ={"GRIDVERSE_MQTT__HOST": "127.0.0.1", "GRIDVERSE_MQTT__PORT": str(port)})
        sub = next(s for s in settings.site.substations if s.name == "ss08")  # the other RTUs are off
        images = {d.name: DeviceImage(d, settings.profiles[d.profile]) for d in sub.devices}
        for image in images.values():
            image.update({p.name: 1.0 for p in image.profile.points}, silent=False)
        broken = threading.Event()
        broken.set()

        async def scenario() -> tuple[str, str, int]:
            server = RtuServer(sub, images)
            await server.start()
            stack = Stack(settings, parts=("gateway",))
            assert stack.gateway is not None
            poller = next(p for p in stack.gateway.pollers if p.device.name == "RTU08")
            real_poll = poller._poll

            async def poll_with_a_bug(groups):  # the task's run() raises, as a bug in it would
                if broken.is_set():
                    raise RuntimeError("bug in the poll loop")
                return await real_poll(groups)

            poller._poll = poll_with_a_bug  # type: ignore[method-assign]
            await stack.start()
            try:

                async def failing() -> str | None:
                    code, body = await asyncio.to_thread(_get, f"{base}/health")
                    return body if code == 503 and "poller:RTU08" in body else None

                down_body = await _until(failing, "/health failing for RTU08's poll task")
                polls = poller.status.polls
                broken.clear()  # the bug goes away: the next restart polls again

                seen = stack.gateway.watchdog.workers["poller:RTU08"]

                async def healthy() -> bool:  # (and the watchdog has noticed: it logs "up again")
                    code, _ = await asyncio.to_thread(_get, f"{base}/health")
                    return code == 200 and poller.status.polls >= polls + 3 and seen.problem is None

                await _until(healthy, "RTU08 polled again and /health ok")
                _, metrics = await asyncio.to_thread(_get, f"{base}/metrics")
            finally:
                await stack.stop()
                await server.stop()
            return down_body, metrics, poller.status.polls

        with caplog.at_level(logging.INFO):
            down_body, metrics, polled = asyncio.run(scenario())
    down = json.loads(down_body)
    assert down["status"] == "failing"
    assert any(p.startswith("gateway worker poller:RTU08: ") for p in down["problems"])
    assert polled >= 3
    assert 'gridverse_gateway_worker_up{worker="poller:RTU08"} 1.0' in metrics
    restarts = [line for line in metrics.splitlines() if line.startswith("gridverse_gateway_worker_restarts_total{")]
    assert any('worker="poller:RTU08"' in line and float(line.split()[-1]) >= 1 for line in restarts)
    about = [r for r in caplog.records if "poller:RTU08" in r.getMessage()]
    errors = [r for r in about if r.levelno >= logging.ERROR]
    # it crashed at every restart while broken, yet: its traceback once, "down" once, "up" once
    assert sum(1 for r in errors if r.exc_info) == 1 and len(errors) == 2
    assert sum(1 for r in about if "up again" in r.getMessage()) == 1


def test_a_dead_thread_is_restarted_and_counted_and_a_stuck_one_reported() -> None:
    registry = CollectorRegistry()
    dog = Watchdog("demo", interval_s=0.1, registry=registry)
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def spawn(target) -> None:
        t = threading.Thread(target=target, daemon=True)
        threads.append(t)
        t.start()

    def short_lived() -> None:  # ends at once the first time, runs the second time
        if len(threads) == 1:
            return
        while not stop.wait(0.05):
            dying.beat()

    dying = dog.add("dies-once", alive=lambda: threads[-1].is_alive(), restart=lambda: spawn(short_lived))
    stuck_thread = threading.Thread(target=stop.wait, daemon=True)  # alive, never beats
    stuck_thread.start()
    dog.add("stuck", alive=stuck_thread.is_alive, restart=lambda: None, stuck_after_s=0.3)
    spawn(short_lived)
    dog.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ("stuck" in dog.problems() and dying.restarts):
            time.sleep(0.05)
        time.sleep(0.3)
        problems = dog.problems()
        text = generate_latest(registry).decode()
    finally:
        dog.stop()
        stop.set()
    assert "dies-once" not in problems and dying.restarts == 1
    assert problems["stuck"].startswith("no progress for")
    assert dog.workers["stuck"].restarts == 0  # a thread cannot be interrupted: reported, not duplicated
    assert 'gridverse_demo_worker_restarts_total{worker="dies-once"} 1.0' in text
    assert 'gridverse_demo_worker_up{worker="stuck"} 0.0' in text


def test_a_failing_loop_logs_once_backs_off_counts_and_logs_its_recovery(caplog: pytest.LogCaptureFixture) -> None:
    worker = Watchdog("demo").add("store writes")
    delays = []
    with caplog.at_level(logging.INFO):
        for i in range(20):
            try:
                raise ConnectionError(f"store refused attempt {i}")
            except ConnectionError as exc:
                delays.append(worker.failed(exc, 1.0))
        worker.ok()
        worker.ok()
    lines = [r for r in caplog.records if "store writes" in r.getMessage()]
    assert len(lines) == 2  # one error with its traceback, one recovery
    assert lines[0].levelno == logging.ERROR and lines[0].exc_info
    assert "recovered after 20 failed attempt(s)" in lines[1].getMessage()
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0] and max(delays) == 30.0
    assert worker.failures == 20 and worker.consecutive == 0


def test_the_detector_loop_logs_a_failing_store_once_and_its_recovery_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: `log.exception` on every cycle while the store failed (a traceback every 2 s)."""
    from anomaly.alarms import AlarmBook
    from anomaly.service import Detectors
    from gridverse.historian.embedded import EmbeddedHistorian

    settings = load_settings(config_dir(tmp_path), environ={})
    settings = settings.model_copy(update={"twin": settings.twin.model_copy(update={"interval_s": 0.02})})
    store = EmbeddedHistorian(tmp_path / "h.db")
    down = threading.Event()
    down.set()
    real_latest = store.latest

    def latest(*args, **kwargs):
        if down.is_set():
            raise ConnectionError("historian unreachable")
        return real_latest(*args, **kwargs)

    store.latest = latest  # type: ignore[method-assign]
    registry = CollectorRegistry()
    dog = Watchdog("detectors", registry=registry)
    detectors = Detectors(settings, store, AlarmBook.of(settings, store, None))
    with caplog.at_level(logging.INFO, logger="anomaly.service"):
        detectors.start(dog)
        try:
            deadline = time.monotonic() + 10
            while detectors.worker.failures < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            down.clear()
            while detectors.worker.consecutive and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            detectors.stop(2.0)
            store.close()
    lines = [r for r in caplog.records if r.name == "anomaly.service"]
    assert detectors.worker.failures >= 5
    assert [r.levelno for r in lines] == [logging.ERROR, logging.INFO]  # once failing, once recovered
    assert lines[0].exc_info and "recovered" in lines[1].getMessage()
    failures = f'gridverse_detectors_worker_failures_total{{worker="detectors"}} {detectors.worker.failures}.0'
    assert failures in generate_latest(registry).decode()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # paho's thread dies: the point
def test_a_dead_mqtt_network_thread_is_restarted_and_the_message_it_died_on_redelivered(tmp_path: Path) -> None:
    """A callback that raises ends paho's network thread: before, the gateway stayed up, /health
    said ok and no later message was stored. Now the watchdog starts the loop again, the broker
    redelivers what was not acknowledged, and the restart is counted."""
    import paho.mqtt.client as mqtt

    metrics_port = free_port()
    main = config_dir(tmp_path, lambda d: d["gateway"].update(metrics_port=metrics_port))
    with mosquitto(tmp_path) as port:
        settings = load_settings(main, environ={"GRIDVERSE_MQTT__HOST": "127.0.0.1", "GRIDVERSE_MQTT__PORT": str(port)})

        async def scenario() -> tuple[int, str]:
            stack = Stack(settings, parts=("gateway",))
            gateway = stack.gateway
            assert gateway is not None
            client = gateway.mqtt.client
            real_on_message = client.on_message
            crashes = []

            def on_message_with_a_bug(c, userdata, msg):  # an exception that escapes into paho's loop
                if not crashes:
                    crashes.append(msg.topic)
                    raise OverflowError("a bug in the message callback")
                real_on_message(c, userdata, msg)

            client.on_message = on_message_with_a_bug
            await stack.start()
            try:
                await _until(lambda: asyncio.sleep(0, gateway.mqtt.connected.is_set()), "gateway connected")
                publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub")
                publisher.connect("127.0.0.1", port)
                publisher.loop_start()
                body = {"time": int(time.time() * 1000), "points": {"YPTR1.TmpOil": {"value": 61.5, "unit": "degC"}}}
                topic = "gridverse/rural1/primary/T1-oil/telemetry"
                publisher.publish(topic, json.dumps(body), qos=1).wait_for_publish(10)
                body["time"] += 1000
                publisher.publish(topic, json.dumps(body), qos=1).wait_for_publish(10)
                publisher.loop_stop()
                stored = lambda: asyncio.sleep(0, gateway.writer.written.get("mqtt", 0) >= 2)  # noqa: E731
                await _until(stored, "both messages stored after the network thread died", timeout=40)
                _, metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
            finally:
                await stack.stop()
            return len(crashes), metrics

        crashed, metrics = asyncio.run(scenario())
    assert crashed == 1
    assert 'gridverse_gateway_worker_restarts_total{worker="mqtt-loop"} 1.0' in metrics
    assert 'gridverse_gateway_worker_up{worker="mqtt-loop"} 1.0' in metrics


def test_a_killed_render_process_is_restarted_and_reported_while_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The Open3D renderer runs in a process of its own; killed (out of memory, a driver crash),
    it is reported and started again, and the render loop keeps going."""
    import os
    import signal

    from gridverse.historian.embedded import EmbeddedHistorian
    from inspection.worker import RenderService

    settings = load_settings(config_dir(tmp_path), environ={})
    store = EmbeddedHistorian(tmp_path / "h.db")
    dog = Watchdog("inspection", interval_s=0.2)
    service = RenderService(settings, store)
    worker_of = lambda: dog.workers["render-process"]  # noqa: E731

    async def scenario() -> tuple[int, int]:
        await service.start(dog)
        dog.start()
        try:
            first = service.renderer._process
            assert first is not None and first.pid is not None
            os.kill(first.pid, signal.SIGKILL)
            await _until(lambda: asyncio.sleep(0, worker_of().restarts >= 1), "the renderer restarted")
            running = lambda: asyncio.sleep(0, not dog.problems() and worker_of().problem is None)  # noqa: E731
            await _until(running, "the renderer running again, as the watchdog saw", timeout=60)
            second = service.renderer._process
            assert second is not None and second.pid is not None and second.is_alive()
            return first.pid, second.pid
        finally:
            dog.stop()
            await service.stop()
            store.close()

    with caplog.at_level(logging.INFO, logger="gridverse.watchdog"):
        first, second = asyncio.run(scenario())
    assert second != first and worker_of().restarts == 1
    said = [r.getMessage() for r in caplog.records if "render-process" in r.getMessage()]
    assert said == [
        "inspection worker render-process is down: not running; restarting it",
        "inspection worker render-process is up again",
    ]
