"""MQTT plumbing shared by the simulator, the gateway and the alarm publisher."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import paho.mqtt.client as mqtt

from gridverse.config import MqttConfig

log = logging.getLogger(__name__)


def topic(config: MqttConfig, site: str, substation: str, device: str, kind: str) -> str:
    """`gridverse/<site>/<substation>/<device>/<kind>` (ARCHITECTURE.md naming)."""
    return f"{config.topic_prefix}/{site}/{substation}/{device}/{kind}"


def make_client(
    config: MqttConfig, client_id: str, *, clean_start: bool = True, manual_ack: bool = False
) -> mqtt.Client:
    """A paho client configured from `mqtt:`; the password comes from the environment only."""
    v5 = config.protocol == "5"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id + config.client_suffix,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else clean_start,
        manual_ack=manual_ack,
    )
    if config.tls is not None:
        tls = config.tls
        for path in (tls.ca_file, tls.cert_file, tls.key_file):
            if path is not None and not Path(path).is_file():
                raise OSError(f"mqtt.tls: {path} is not a readable file; check the certificate paths")
        client.tls_set(
            ca_certs=str(tls.ca_file),
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
        )
        client.tls_insecure_set(tls.insecure_skip_hostname)
    if config.username:
        password = config.password.get_secret_value() if config.password else None
        client.username_pw_set(config.username, password)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(config: MqttConfig, *, clean_start: bool) -> dict:
    """Keyword arguments for connect/connect_async: MQTT 5 sessions are kept by clean_start=False
    with a session expiry (a day), MQTT 3.1.1 ones by clean_session (set on the client)."""
    if config.protocol != "5":
        return {}
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    if not clean_start:
        props.SessionExpiryInterval = 86_400
    return {"clean_start": clean_start, "properties": props}


def subscription(config: MqttConfig, topic_filter: str) -> str:
    """The filter to subscribe to: `$share/<group>/<filter>` when gateways share the work."""
    return f"$share/{config.shared_group}/{topic_filter}" if config.shared_group else topic_filter


def broker_host(config: MqttConfig) -> str:
    return config.host or "127.0.0.1"


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A pure-Python MQTT broker (amqtt) for one machine, when no broker is configured."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._broker = None

    async def start(self) -> None:
        from amqtt.broker import Broker

        if port_is_open(self.host, self.port):
            raise OSError(
                f"embedded MQTT broker: {self.host}:{self.port} is already in use; set mqtt.host "
                "to use that broker, or mqtt.port to another port"
            )
        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
        )
        await self._broker.start()
        log.info("embedded MQTT broker listening on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()


def stop_client(client: mqtt.Client) -> None:
    """Disconnect cleanly, then stop the network thread (paho's documented order). Blocking:
    call it from a worker thread when an embedded broker runs on the caller's event loop."""
    client.disconnect()
    client.loop_stop()
