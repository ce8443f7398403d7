"""Grafana is provisioned from files by docker-compose, and what it is given matches the rest of
the system: the InfluxDB datasource points at compose's influxdb service, port and InfluxQL
database; Prometheus scrapes the gateway's metrics port; every dashboard query names a metric
the gateway really exports, or a measurement, field and tag the code really writes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry

import gridverse.schema as schema
from gridverse.config import InfluxConfig
from gridverse.settings import REPO_ROOT

GRAFANA = REPO_ROOT / "deploy" / "grafana"
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
#: Where the historian's records are built: a field or tag a query names must be written here.
WRITERS = ("gridverse", "gridmodel", "anomaly", "gateway", "fieldsim")


def _datasources() -> dict[str, dict]:
    docs = [yaml.safe_load(p.read_text()) for p in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yaml"))]
    assert docs, "no datasource file in deploy/grafana/provisioning/datasources"
    return {ds["uid"]: ds for doc in docs for ds in doc["datasources"]}


def _dashboards() -> list[tuple[Path, dict]]:
    files = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert files, "no dashboard JSON in deploy/grafana/dashboards"
    return [(p, json.loads(p.read_text())) for p in files]


def _targets() -> list[tuple[str, dict, dict]]:
    """(panel title, datasource, target) of every query of every panel."""
    out = []
    for _path, dash in _dashboards():
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                out.append((panel["title"], target.get("datasource") or panel["datasource"], target))
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                out.append((f"variable {var['name']}", var["datasource"], {"query": var["query"]}))
    return out


def _container_port(service: dict, published_or_container: int) -> bool:
    """Whether the service listens on the port in its container (from its `ports`)."""
    return any(str(p).split(":")[-1] == str(published_or_container) for p in service.get("ports", []))


def _exported_metric_names() -> set[str]:
    """Every sample name the gateway's /metrics serves: its own metrics, its failure counters
    and its watchdog's worker metrics, as the real classes register them."""
    from gateway.metrics import GatewayMetrics, _FailureCounts
    from gridverse.watchdog import Watchdog

    registry = CollectorRegistry()
    GatewayMetrics(registry)
    Watchdog("gateway", registry=registry)
    fake_gateway = SimpleNamespace(
        writer=SimpleNamespace(historian=SimpleNamespace()), spool=SimpleNamespace(), pollers=[]
    )
    registry.register(_FailureCounts(fake_gateway))  # type: ignore[arg-type]
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names = set()
    for family in registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def _code_text() -> str:
    return "\n".join(p.read_text() for d in WRITERS for p in (REPO_ROOT / d).rglob("*.py"))


def test_influxdb_datasource_matches_the_compose_influxdb_service() -> None:
    ds = _datasources()["gridverse-influxdb"]
    assert ds["type"] == "influxdb"
    url = urlsplit(ds["url"])
    assert url.hostname in SERVICES, f"{url.hostname} is not a docker-compose service"
    assert SERVICES[url.hostname]["image"].startswith("influxdb:")
    assert _container_port(SERVICES[url.hostname], url.port)
    # the InfluxQL database is the one the DBRP mapping creates and gridverse itself queries
    dbrp = (REPO_ROOT / "deploy" / "influxdb-dbrp.sh").read_text()
    assert f"--db {ds['jsonData']['dbName']} " in dbrp
    assert ds["jsonData"]["dbName"] == InfluxConfig().database
    # InfluxDB 2 answers InfluxQL only with the token; it comes from the environment, not the file
    assert ds["secureJsonData"]["httpHeaderValue1"] == "Token $INFLUX_TOKEN"
    assert SERVICES["grafana"]["environment"]["INFLUX_TOKEN"].startswith("${INFLUX_TOKEN:?")
    assert SERVICES["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"].startswith("${INFLUX_TOKEN")


def test_prometheus_scrapes_the_gateway_metrics_port() -> None:
    ds = _datasources()["gridverse-prometheus"]
    url = urlsplit(ds["url"])
    assert url.hostname in SERVICES and _container_port(SERVICES[url.hostname], url.port)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["prometheus"]["volumes"] if v.startswith("./")}
    config = yaml.safe_load((REPO_ROOT / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    port = SERVICES["gateway"]["environment"]["GRIDVERSE_GATEWAY__METRICS_PORT"]
    assert f"gateway:{port}" in targets


def test_grafana_service_mounts_the_provisioning_files() -> None:
    grafana = SERVICES["grafana"]
    mounts = {v.split(":")[1]: REPO_ROOT / v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    for host in mounts.values():
        assert host.exists(), f"{host} is mounted into grafana but does not exist"
    providers = [
        prov
        for p in (GRAFANA / "provisioning" / "dashboards").glob("*.yaml")
        for prov in yaml.safe_load(p.read_text())["providers"]
    ]
    assert providers
    for prov in providers:
        inside = prov["options"]["path"]
        assert inside in mounts and list(mounts[inside].glob("*.json")), f"provider path {inside} holds no dashboard"
    assert "GF_SECURITY_ADMIN_PASSWORD" in grafana["environment"]  # no default admin password
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, name = home.rsplit("/", 1)
    assert (mounts[folder] / name).is_file()


def test_dashboards_are_well_formed_and_use_the_provisioned_datasources() -> None:
    uids = set(_datasources())
    for path, dash in _dashboards():
        assert dash["uid"] and dash["title"], path
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{path}: panel ids repeat"
        queries = [p for p in dash["panels"] if p["type"] != "row"]
        assert len(queries) >= 10
        for panel in queries:
            assert panel["datasource"]["uid"] in uids, panel["title"]
            assert panel["targets"], f"{panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == panel["datasource"]["uid"]
    kinds = {ds["type"] for _t, ds, _q in _targets()}
    assert kinds == {"prometheus", "influxdb"}


def test_every_prometheus_query_names_a_metric_the_gateway_exports() -> None:
    exported = _exported_metric_names()
    used = set()
    for title, ds, target in _targets():
        if ds["type"] != "prometheus":
            continue
        names = re.findall(r"\bgridverse_[a-z0-9_]+", target["expr"])
        assert names, f"{title}: {target['expr']} names no gridverse metric"
        for name in names:
            assert name in exported, f"panel {title!r}: {name} is not exported (exported: {sorted(exported)})"
        used.update(names)
    # the dashboard shows the gateway's health, not a few odd metrics
    for needed in ("points_in_total", "spool_depth_points", "device_up", "store_up", "poll_latency_seconds_bucket"):
        assert f"gridverse_gateway_{needed}" in used


_IDENT = re.compile(r'"([^"]+)"')


def test_every_influxql_query_names_what_the_code_writes() -> None:
    measurements = {v for k, v in vars(schema).items() if k.isupper() and isinstance(v, str) and k in schema.__all__}
    code = _code_text()
    seen = set()
    for title, ds, target in _targets():
        if ds["type"] != "influxdb":
            continue
        query = target["query"]
        froms = re.findall(r'\bFROM "([^"]+)"', query)
        assert froms, f"{title}: no FROM in {query}"
        for m in froms:
            assert m in measurements, f"panel {title!r}: measurement {m!r} is not in gridverse.schema"
            seen.add(m)
        aliases = set(re.findall(r'\bAS "([^"]+)"', query))
        for ident in set(_IDENT.findall(query)) - aliases - set(froms):
            written = f'"{ident}"' in code or f"'{ident}'" in code
            assert written, f"panel {title!r}: {ident!r} is neither a field nor a tag the code writes"
    assert {schema.TWIN_BUS, schema.TWIN_BRANCH, schema.TWIN_CYCLE, schema.ALARM} <= seen


@pytest.mark.parametrize("bad", ["gridverse_gateway_points_received_total", "gridverse_twin_cycles_total"])
def test_the_metric_check_refuses_a_name_nobody_exports(bad: str) -> None:
    """The check above is not vacuous: names nobody exports are not in the exported set."""
    assert bad not in _exported_metric_names()
