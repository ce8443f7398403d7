"""The gateway's batching MQTT client (gateway/mqtt_batching.py) against a real Mosquitto: a light
stream is read a batch at a time, held acknowledgements reach the broker, and a broker with a
small in-flight window is not slowed down by the batching wait."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.mqtt_batching import BatchingClient, batching_supported
from tests.services import mosquitto, wait_for

TOPIC = "gridverse/test/ss/S1/telemetry"


def _subscriber(port: int, client_id: str, batch_s: float, on_message) -> BatchingClient:
    client = BatchingClient(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=True, batch_s=batch_s
    )
    subscribed = threading.Event()
    client.on_connect = lambda c, *_a: c.subscribe(TOPIC, qos=1)
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert subscribed.wait(10), "subscription not confirmed"
    return client


def _publisher(port: int) -> mqtt.Client:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    return pub


def _stop(*clients: mqtt.Client) -> None:
    for c in clients:
        c.disconnect()
        c.loop_stop()


def test_this_paho_has_what_the_batching_relies_on() -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    assert batching_supported(client), "paho-mqtt changed its internals: BatchingClient would fall back to paho"


def test_a_light_stream_is_read_a_batch_at_a_time(tmp_path: Path) -> None:
    arrivals: list[float] = []

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        arrivals.append(time.monotonic())
        c.ack(msg.mid, msg.qos)

    with mosquitto(tmp_path) as port:
        sub = _subscriber(port, "batching-light", 0.3, on_message)
        pub = _publisher(port)
        try:
            for k in range(40):  # 50 messages a second for 0.8 s
                pub.publish(TOPIC, f"{k}", qos=1)
                time.sleep(0.02)
            wait_for(lambda: len(arrivals) == 40, "all 40 messages", timeout=10)
            sub.flush_acks()
        finally:
            _stop(pub, sub)
    # messages handled at one wake-up arrive within a few ms of each other; paho alone would hand
    # them over one by one, 20 ms apart (40 wake-ups)
    wakeups = 1 + sum(1 for a, b in zip(arrivals, arrivals[1:], strict=False) if b - a > 0.01)
    assert wakeups <= 8, f"{wakeups} wake-ups for 40 messages over 0.8 s with batch_s 0.3"


def test_held_acknowledgements_reach_the_broker_and_an_unacknowledged_message_comes_again(tmp_path: Path) -> None:
    """An acknowledgement held by `ack` leaves at the network thread's next pass even when nobody
    flushes it; a message never acknowledged is sent again by the broker after the connection
    dies (here: without a DISCONNECT), and only that one."""
    got: list[str] = []

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        text = msg.payload.decode()
        got.append(text)
        if text != "never acked":
            c.ack(msg.mid, msg.qos)  # held by BatchingClient; no flush_acks in this test

    with mosquitto(tmp_path) as port:
        sub = _subscriber(port, "batching-acks", 0.2, on_message)
        pub = _publisher(port)
        try:
            pub.publish(TOPIC, "acked", qos=1)
            pub.publish(TOPIC, "never acked", qos=1)
            wait_for(lambda: sorted(got) == ["acked", "never acked"], "both messages")
            time.sleep(1.5)  # a few passes of the network thread
            sub._sock.close()  # type: ignore[union-attr]  # the connection dies without a DISCONNECT
            sub.loop_stop()
            got.clear()
            again = _subscriber(port, "batching-acks", 0.2, on_message)
            try:
                wait_for(lambda: "never acked" in got, "the unacknowledged message again", timeout=10)
                time.sleep(0.5)
                assert got == ["never acked"], f"only the unacknowledged message comes again, got {got}"
            finally:
                _stop(again)
        finally:
            _stop(pub)


def test_a_small_in_flight_window_is_not_held_up_by_the_batching_wait(tmp_path: Path) -> None:
    """Mosquitto sends at most 10 unacknowledged messages here. Acknowledgements flushed from
    another thread (as the spool's committer does) wake the client at once, so 300 messages take
    far less than the 300 / 10 × 0.5 s = 15 s that waiting out batch_s after each window would."""
    got: list[int] = []
    acks: list[int] = []
    lock = threading.Condition()

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(int(msg.payload))
        with lock:
            acks.append(msg.mid)
            lock.notify()

    stop = threading.Event()

    def committer(client: BatchingClient) -> None:
        while not stop.is_set():
            with lock:
                lock.wait(0.05)
                mids, acks[:] = list(acks), []
            for mid in mids:
                client.ack(mid, 1)
            client.flush_acks()

    with mosquitto(tmp_path, extra="max_inflight_messages 10\n") as port:
        sub = _subscriber(port, "batching-window", 0.5, on_message)
        worker = threading.Thread(target=committer, args=(sub,), daemon=True)
        worker.start()
        pub = _publisher(port)
        try:
            t0 = time.monotonic()
            for k in range(300):
                pub.publish(TOPIC, str(k), qos=1)
            wait_for(lambda: len(got) >= 300, "300 messages", timeout=30)
            elapsed = time.monotonic() - t0
        finally:
            stop.set()
            worker.join(5)
            _stop(pub, sub)
    assert sorted(got) == list(range(300))
    assert elapsed < 6.0, f"300 messages through a window of 10 took {elapsed:.1f} s"
