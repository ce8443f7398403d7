"""`gridverse gateway test` (gateway/probe.py): a healthy SunSpec inverter whose nameplate points
are strings and whose unimplemented points are invalid is an answering device, not a dead one
(it used to exit 4); an RTU that does not answer is; and the probe listens to Sparkplug B as well
as to the JSON sensors, learning a late-joined edge node's names by a rebirth request."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.probe import run_probe
from gateway.sparkplug import DOUBLE, INT64, Metric, Payload, encode_payload
from gridverse.config import DeviceConfig, SubstationConfig
from gridverse.settings import load_settings
from tests.services import free_port, mosquitto
from tests.test_profiles import _serve, sunspec_image

T = 1_790_000_000_000


class EdgeNode:
    """A Sparkplug B edge node that publishes NDATA by alias and answers a rebirth request (NCMD)
    with a new NBIRTH, as Sparkplug 3.0 edge libraries do."""

    def __init__(self, port: int) -> None:
        self.seq = 0
        self.born = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-rtu7")
        self.client.on_message = lambda _c, _u, _m: self.birth()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("spBv1.0/primary/NCMD/rtu7", qos=1)
        self.client.loop_start()

    def birth(self) -> None:
        self.seq = 0
        metrics = [
            Metric("bdSeq", None, None, INT64, value=1),
            Metric("Inverter/MMXU1/TotW", 1, None, DOUBLE, value=5e5),
        ]
        self.client.publish("spBv1.0/primary/NBIRTH/rtu7", encode_payload(Payload(T, 0, metrics)), qos=1)
        self.born.set()

    def data(self, value: float) -> None:
        self.seq = (self.seq + 1) % 256
        body = Payload(None, self.seq, [Metric("", 1, None, DOUBLE, value=value)])
        self.client.publish("spBv1.0/primary/NDATA/rtu7", encode_payload(body), qos=1)


def test_probe_counts_only_silent_devices_and_hears_sparkplug(tmp_path: Path) -> None:
    base = load_settings()
    port = free_port()
    pv = SubstationConfig(
        name="pv",
        host="127.0.0.1",
        port=port,
        devices=[DeviceConfig(name="INV1", bay="PV", unit_id=3, profile="pv_inverter_sunspec")],
    )
    silent = base.site.substations[1].model_copy(update={"port": free_port()})  # nothing listens
    lines: list[str] = []
    with mosquitto(tmp_path) as mqtt_port:
        settings = base.model_copy(
            update={
                "site": base.site.model_copy(update={"substations": [pv, silent]}),
                "mqtt": base.mqtt.model_copy(
                    update={"host": "127.0.0.1", "port": mqtt_port, "sparkplug_groups": ["primary"]}
                ),
                "gateway": base.gateway.model_copy(update={"timeout_s": 0.5, "retries": 0}),
            }
        )
        edge = EdgeNode(mqtt_port)
        stop = threading.Event()

        def publish() -> None:
            k = 0
            while not stop.wait(0.1):
                k += 1
                edge.data(float(k))  # before the probe's rebirth request: data of an unknown node

        feeder = threading.Thread(target=publish)
        feeder.start()

        async def serve_and_probe() -> int:
            server = await _serve(port, 3, sunspec_image(), {})
            try:
                return await asyncio.to_thread(run_probe, settings, 2.0, lines.append)
            finally:
                await server.shutdown()

        try:
            dead = asyncio.run(serve_and_probe())
        finally:
            stop.set()
            feeder.join()
            edge.client.loop_stop()
    text = "\n".join(lines)
    assert dead == len(silent.devices), text  # the silent RTU's devices only, not the inverter
    assert "pv/INV1/LPHD1.PhyNam" in text and "'GV-INV-10K'" in text
    assert "pv/INV1/MMXU1.TotVAr" in text and "invalid" in text  # SunSpec 'not implemented'
    assert f"devices without an answer: {sorted(d.name for d in silent.devices)}" in text
    assert edge.born.is_set(), "the probe asked the edge node for a rebirth"
    assert "sparkplug primary/rtu7/MMXU1.TotW" in text
    assert "Sparkplug edge nodes heard: ['primary/rtu7']" in text
