"""InfluxDB historian: line-protocol writes, InfluxQL reads over `/query`.

Writes go through `influxdb-client` to `/api/v2/write` (InfluxDB 2.x, 3.x, 1.8+ and servers that
accept its line protocol, such as VictoriaMetrics), or, with `api: v1`, straight to `/write` for
InfluxDB 1.x before 1.8. Both paths gzip at level 1 (`GZIP_LEVEL`): influxdb-client's own
`enable_gzip` compresses at level 9: a body of 20,000 points (2.8 MB of line protocol) takes 87 ms
there and comes out 115 kB, against 7 ms and 133 kB at level 1; the gateway's drain rate was half
of what it is now. So the v2 path hands influxdb-client's `WriteService` a body already
compressed, as that API documents ("send the compressed data and the Content-Encoding: gzip
header"). Reads use InfluxQL, which InfluxDB 1.x, 2.x (through DBRP mappings) and
3.x all serve, so the same code runs against every generation.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from gridverse.config import InfluxConfig
from gridverse.historian.base import Historian, HistorianError, HistorianRejected
from gridverse.historian.lineproto import to_lines
from gridverse.points import Record

#: The store refused the data itself; 429 and 5xx (overload, outage) and 401/403/404 (credentials,
#: bucket) are retried instead, since the points are fine and the store or its setup is not.
_REJECTED_STATUS = {400, 413, 422}

#: gzip level of write bodies: level 1 gives most of the size gain for a fraction of level 9's CPU
GZIP_LEVEL = 1


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxHistorian(Historian):
    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        self.url = config.url.rstrip("/")
        token = config.token.get_secret_value() if config.token else None
        self._headers: dict[str, str] = {}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif config.username and config.password:
            self._headers.update(
                urllib3.make_headers(basic_auth=f"{config.username}:{config.password.get_secret_value()}")
            )
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(total=config.timeout_s), retries=False)
        self._client: InfluxDBClient | None = None
        if config.api == "v2":
            self._client = InfluxDBClient(
                url=self.url,
                token=token or "",
                org=config.org,
                timeout=int(config.timeout_s * 1000),
                enable_gzip=False,  # we compress ourselves, at GZIP_LEVEL
            )
            self._write_service = WriteService(self._client.api_client)

    def _where(self, url_hint: str) -> str:
        return f"InfluxDB at {self.url} ({url_hint})"

    # line protocol is the spool's format for InfluxDB: encoded once at intake, sent as is
    def encode(self, records: Sequence[Record]) -> bytes:
        return to_lines(records).encode()

    def write_encoded(self, blobs: Sequence[bytes]) -> None:
        if blobs:
            self._write_body(b"\n".join(blobs))

    def split_encoded(self, blob: bytes) -> list[bytes]:
        return blob.split(b"\n")

    def decode(self, blob: bytes) -> list[Record]:
        raise NotImplementedError("line protocol is not read back; query the store instead")

    def write(self, records: Sequence[Record]) -> None:
        if records:
            self._write_body(to_lines(records).encode())

    def _write_body(self, body: bytes) -> None:
        compressed = gzip.compress(body, GZIP_LEVEL)
        if self._client is not None:
            try:
                self._write_service.post_write(
                    org=self.config.org,
                    bucket=self.config.bucket,
                    body=compressed,
                    precision=WritePrecision.NS,
                    content_encoding="gzip",
                    content_type="text/plain; charset=utf-8",
                )
            except ApiException as exc:
                kind = HistorianRejected if exc.status in _REJECTED_STATUS else HistorianError
                raise kind(
                    f"{self._where('/api/v2/write')}: HTTP {exc.status} {exc.reason}: "
                    f"{(exc.body or '')[:200]}; check historian.influx.bucket/org and the token"
                ) from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise HistorianError(f"{self._where('/api/v2/write')}: unreachable ({exc}); is the server up?") from exc
            return
        self._request(
            "POST",
            "/write",
            {"db": self.config.database, "precision": "ns"},
            body=compressed,
            headers={"Content-Encoding": "gzip"},
        )

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        url = f"{self.url}{path}?{urlencode(params)}"
        try:
            resp = self._http.request(method, url, body=body, headers={**self._headers, **(headers or {})})
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise HistorianError(f"{self._where(path)}: unreachable ({exc}); is the server up?") from exc
        if resp.status >= 300:
            kind = HistorianRejected if resp.status in _REJECTED_STATUS and method == "POST" else HistorianError
            raise kind(
                f"{self._where(path)}: HTTP {resp.status}: {resp.data[:200]!r}; "
                "check historian.influx.database and the credentials"
            )
        return json.loads(resp.data) if resp.data else None

    def _select(
        self,
        measurement: str,
        tags: Mapping[str, str] | None,
        start_ns: int | None,
        end_ns: int | None,
        tail: str,
    ) -> list[Record]:
        conditions = [f"{_quote_ident(k)} = {_quote_str(v)}" for k, v in (tags or {}).items()]
        if start_ns is not None:
            conditions.append(f"time >= {int(start_ns)}")
        if end_ns is not None:
            conditions.append(f"time <= {int(end_ns)}")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        q = f"SELECT * FROM {_quote_ident(measurement)}{where} GROUP BY *{tail}"
        data = self._request("GET", "/query", {"db": self.config.database, "q": q, "epoch": "ns"})
        out: list[Record] = []
        for result in data.get("results", []):
            if "error" in result:
                raise HistorianError(f"{self._where('/query')}: {result['error']} in {q!r}")
            for series in result.get("series", []):
                columns = series["columns"]
                for row in series["values"]:
                    values = dict(zip(columns, row, strict=True))
                    time_ns = int(values.pop("time"))
                    fields = {k: v for k, v in values.items() if v is not None}
                    out.append(
                        Record(
                            measurement=series["name"],
                            tags=dict(series.get("tags") or {}),
                            fields=fields,
                            time_ns=time_ns,
                        )
                    )
        out.sort(key=lambda r: (r.time_ns, r.series_key()))
        return out

    def query(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        # LIMIT with GROUP BY * bounds each series; the first `limit` rows overall are among the
        # first `limit` of every series, so the server never sends the whole measurement
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        records = self._select(measurement, tags, start_ns, end_ns, tail)
        return records[:limit] if limit is not None else records

    def latest(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[Record]:
        return self._select(measurement, tags, start_ns, end_ns, " ORDER BY time DESC LIMIT 1")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._http.clear()
