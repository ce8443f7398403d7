"""MQTT plumbing shared by the simulator, the gateway and the alarm publisher."""

from __future__ import annotations

import hmac
import logging
import socket
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gridverse.config import MqttConfig

log = logging.getLogger(__name__)


def topic(config: MqttConfig, site: str, substation: str, device: str, kind: str) -> str:
    """`gridverse/<site>/<substation>/<device>/<kind>`: the one topic layout for JSON messages
    (`telemetry`, `normalised`, `alarm`)."""
    return f"{config.topic_prefix}/{site}/{substation}/{device}/{kind}"


def make_client(
    config: MqttConfig,
    client_id: str,
    *,
    clean_start: bool = True,
    manual_ack: bool = False,
    client_class: type[mqtt.Client] = mqtt.Client,
) -> mqtt.Client:
    """A paho client (or a subclass of it) configured from `mqtt:`; the password comes from the
    environment only."""
    v5 = config.protocol == "5"
    client = client_class(
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
    """A pure-Python MQTT broker (amqtt) for one machine, when no broker is configured.

    It listens on `mqtt.embedded_bind` (loopback by default, so only this machine reaches it).
    With `mqtt.username` set it admits only that user with `GRIDVERSE_MQTT__PASSWORD`; without,
    it admits anonymous clients, which is acceptable only on loopback (the single-machine demo)."""

    def __init__(self, host: str, port: int, *, username: str | None = None, password: str | None = None) -> None:
        self.host, self.port = host, port
        self.username, self._password = username, password
        self._broker: Any = None

    @classmethod
    def from_config(cls, config: MqttConfig) -> EmbeddedBroker:
        password = config.password.get_secret_value() if config.password else None
        return cls(config.embedded_bind, config.port, username=config.username, password=password)

    @property
    def anonymous(self) -> bool:
        return self.username is None

    async def start(self) -> None:
        from amqtt.broker import Broker

        probe = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if port_is_open(probe, self.port):
            raise OSError(
                f"embedded MQTT broker: {self.host}:{self.port} is already in use; set mqtt.host "
                "to use that broker, or mqtt.port to another port"
            )
        if self.anonymous:
            auth: dict[str, dict[str, object]] = {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            }
        else:
            auth = {f"{__name__}.PasswordAuth": {"username": self.username, "password": self._password or ""}}
        listener = {"type": "tcp", "bind": f"{self.host}:{self.port}"}
        broker = Broker({"listeners": {"default": listener}, "plugins": auth})
        await broker.start()
        self._broker = broker
        if self.anonymous and self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "embedded MQTT broker on %s:%s admits anonymous clients from the network: anyone there can publish "
                "fake telemetry or alarms; set mqtt.username and GRIDVERSE_MQTT__PASSWORD",
                self.host,
                self.port,
            )
        log.info(
            "embedded MQTT broker listening on %s:%s (%s)",
            self.host,
            self.port,
            "anonymous clients allowed" if self.anonymous else f"user {self.username} only",
        )

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()


def _password_auth_plugin() -> type:
    """The amqtt plugin class, built on first use so that importing this module never imports amqtt."""
    from dataclasses import dataclass

    from amqtt.plugins.base import BaseAuthPlugin

    class _PasswordAuth(BaseAuthPlugin):
        """Admit only the configured user and password (compared in constant time)."""

        @dataclass
        class Config:
            username: str
            password: str

        async def authenticate(self, *, session: Any) -> bool:
            user = session.username or ""
            given = session.password or ""
            if isinstance(given, bytes):
                given = given.decode("utf-8", "replace")
            ok_user = hmac.compare_digest(user.encode(), self.config.username.encode())
            ok_password = hmac.compare_digest(given.encode(), self.config.password.encode())
            return bool(ok_user and ok_password and self.config.password)

    _PasswordAuth.__qualname__ = _PasswordAuth.__name__ = "PasswordAuth"
    _PasswordAuth.__module__ = __name__
    return _PasswordAuth


def __getattr__(name: str) -> type:
    # amqtt loads plugins by dotted name ("gridverse.mqtt.PasswordAuth")
    if name == "PasswordAuth":
        cls = _password_auth_plugin()
        globals()["PasswordAuth"] = cls
        return cls
    raise AttributeError(name)


def stop_client(client: mqtt.Client) -> None:
    """Disconnect cleanly, then stop the network thread (paho's documented order). Blocking:
    call it from a worker thread when an embedded broker runs on the caller's event loop."""
    client.disconnect()
    client.loop_stop()
