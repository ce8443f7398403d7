"""MQTT transport on a real Mosquitto: MQTT 5 shared subscriptions split one topic tree between
gateway processes without loss or duplicates; TLS with username/password connects, a wrong
password is refused and said so."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.mqtt_ingest import MqttIngest
from gridverse.config import MqttConfig, MqttTls, Settings
from gridverse.settings import load_settings
from tests.services import free_port, mosquitto, require_binary, wait_for


def _settings(**mqtt_fields: object) -> Settings:
    base = load_settings()
    return base.model_copy(update={"mqtt": MqttConfig(host="127.0.0.1", **mqtt_fields)})


def _body(k: int) -> bytes:
    return json.dumps({"time": 1_700_000_000_000 + k, "points": {"YPTR1.TmpOil": {"value": float(k)}}}).encode()


def _collector(into: list):
    def take(rows: list, on_durable) -> None:
        into.extend(rows)
        if on_durable:
            on_durable()

    return take


def test_shared_subscription_splits_the_work_between_gateways(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as port:
        got: dict[str, list] = {"a": [], "b": []}
        gateways = []
        for name in ("a", "b"):
            settings = _settings(port=port, protocol="5", shared_group="gw", client_suffix=f"-{name}")
            ingest = MqttIngest.of(settings, _collector(got[name]), _collector([]))
            ingest.start()
            gateways.append(ingest)
        for g in gateways:
            assert g.connected.wait(10)
        time.sleep(0.5)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub", protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        infos = [
            pub.publish(f"gridverse/rural1/primary/{'T1-oil' if k % 2 else 'T2-oil'}/telemetry", _body(k), qos=1)
            for k in range(400)
        ]
        for info in infos:
            info.wait_for_publish(10)
        wait_for(lambda: len(got["a"]) + len(got["b"]) >= 400, "all messages", timeout=20)
        time.sleep(0.5)
        pub.loop_stop()
        for g in gateways:
            g.stop()
    assert got["a"] and got["b"]  # both gateways worked
    values = sorted(r.fields["value"] for r in got["a"] + got["b"])
    assert values == [float(k) for k in range(400)]  # every message once, none twice


def _certificates(tmp: Path) -> tuple[Path, Path, Path]:
    openssl = require_binary("openssl", "openssl")
    ca_key, ca, key, csr, cert = (tmp / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    run = lambda *a: subprocess.run([openssl, *a], check=True, capture_output=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=gridverse test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ext = tmp / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return ca, cert, key


def test_tls_with_password_connects_and_a_wrong_password_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    passwd = require_binary("mosquitto_passwd", "mosquitto")
    ca, cert, key = _certificates(tmp_path)
    users = tmp_path / "passwords"
    subprocess.run([passwd, "-c", "-b", str(users), "gateway", "right-horse-battery"], check=True)
    port = free_port()
    # `user root`: run as root (as CI does), mosquitto would otherwise switch to its own user, which
    # cannot read files under pytest's private temporary directory; as another user it is ignored
    extra = (
        f"user root\nlistener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"password_file {users}\nallow_anonymous false\n"
    )
    with mosquitto(tmp_path, extra=extra):  # a plain listener too; the TLS one is `port`
        got: list = []
        settings = _settings(port=port, username="gateway", password="right-horse-battery", tls=MqttTls(ca_file=ca))
        ingest = MqttIngest.of(settings, _collector(got), _collector([]))
        ingest.start()
        assert ingest.connected.wait(10), "TLS + password connection"
        time.sleep(0.3)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-pub")
        pub.tls_set(ca_certs=str(ca))
        pub.username_pw_set("gateway", "right-horse-battery")
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish("gridverse/rural1/primary/T1-oil/telemetry", _body(7), qos=1).wait_for_publish(10)
        wait_for(lambda: len(got) == 1, "the message over TLS", timeout=10)
        pub.loop_stop()
        ingest.stop()
        wrong = _settings(port=port, username="gateway", password="wrong", tls=MqttTls(ca_file=ca))
        refused = MqttIngest.of(wrong, _collector([]), _collector([]))
        with caplog.at_level("ERROR"):
            refused.start()
            wait_for(lambda: "refused the gateway" in caplog.text, "refusal logged", timeout=10)
        assert not refused.connected.is_set()
        refused.stop()
    assert "right-horse-battery" not in caplog.text
