"""Supervision of long-running threads, tasks and processes, and the one way a loop fails.

`Worker` is what a loop reports to: `beat()` after each good iteration, `failed(exc)` when an
iteration raises (logged once with its traceback, counted, backed off), `ok()` when it works again
(logged once). `Watchdog` knows each worker's liveness (alive, and a heartbeat younger than its
`stuck_after_s`), turns a dead or stuck one into a named problem for `/health`, exports
`gridverse_<part>_worker_up`, `..._worker_restarts_total` and `..._worker_failures_total`, and
restarts what can be restarted with exponential back-off. `HealthServer` serves `/metrics` and
`/health` for one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A heartbeat older than this many periods marks a worker stuck (unless it says otherwise).
DEFAULT_MISSES = 5


@dataclass
class Worker:
    """One supervised loop. `alive` says whether its thread/task/process still exists; `restart`
    (when given) starts a fresh one; `stuck_after_s` (when given) is how old its last heartbeat
    may get before it counts as stuck."""

    name: str
    alive: Callable[[], bool] = lambda: True
    restart: Callable[[], object] | None = None
    stuck_after_s: float | None = None
    max_backoff_s: float = 30.0
    logger: logging.Logger = field(default=log, repr=False)
    restart_when_stuck: bool = False  # a task can be cancelled and started again; a thread cannot
    last_beat: float = field(default_factory=time.monotonic)
    failures: int = 0  # iterations that raised, in total
    consecutive: int = 0  # iterations that raised since the last good one
    last_error: str = ""
    restarts: int = 0
    problem: str | None = None  # what the watchdog last found wrong (None: healthy)
    _failing_since: float = 0.0
    _died: str = ""  # set by `died()`: the reason it stopped, until restarted
    _restart_at: float = 0.0
    _restarted_at: float = 0.0
    _restart_backoff_s: float = 1.0
    _healthy_since: float = field(default_factory=time.monotonic)

    # -- what the loop itself calls ---------------------------------------------------------
    def beat(self) -> None:
        """The loop made progress (call after each good iteration)."""
        self.last_beat = time.monotonic()

    def failed(self, exc: BaseException, base_delay_s: float = 1.0) -> float:
        """An iteration raised: log it once (with the traceback) until the loop recovers, count
        it, and return how long to back off before the next attempt."""
        self.failures += 1
        self.consecutive += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if self.consecutive == 1:
            self._failing_since = time.monotonic()
            self.logger.error(
                "%s failed; retrying with back-off, logged again only when it recovers",
                self.name,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        return min(base_delay_s * 2 ** (self.consecutive - 1), max(self.max_backoff_s, base_delay_s))

    def ok(self) -> None:
        """An iteration worked: log the recovery once, then beat."""
        if self.consecutive:
            self.logger.info(
                "%s recovered after %d failed attempt(s) over %.0f s",
                self.name,
                self.consecutive,
                time.monotonic() - self._failing_since,
            )
            self.consecutive = 0
        self.beat()

    def died(self, reason: str) -> None:
        """Its thread or task ended unexpectedly (from a done-callback): found by the next check."""
        self._died = reason[:300]

    # -- what the watchdog evaluates --------------------------------------------------------
    def diagnose(self, now: float) -> tuple[str | None, str]:
        """What is wrong with it now (None: it runs and makes progress), and of which kind:
        "dead" (its thread/task/process ended), "stuck" (no heartbeat; it still exists),
        "recovering" (restarted, no heartbeat from the new one yet) or "" (healthy)."""
        if self._died:
            return f"stopped: {self._died}", "dead"
        try:
            alive = self.alive()
        except Exception as exc:  # a liveness probe that raises says the worker is not fine
            return f"liveness check failed: {type(exc).__name__}: {exc}", "dead"
        if not alive:
            return "not running" + (f" (last error: {self.last_error})" if self.last_error else ""), "dead"
        if self.stuck_after_s is None:
            return None, ""
        since = max(self.last_beat, self._restarted_at)
        age = now - since
        if age > self.stuck_after_s:
            if self.consecutive:
                return f"failing for {age:.0f} s: {self.last_error}", "stuck"
            return f"no progress for {age:.0f} s (expected within {self.stuck_after_s:.3g} s)", "stuck"
        if self._restarted_at > self.last_beat:  # up again only once the new one made progress
            ago = now - self._restarted_at
            return f"restarted {ago:.0f} s ago, no progress yet (last: {self.last_error})", "recovering"
        return None, ""


class Watchdog:
    """Supervises one part's workers (a thread checks them every `interval_s`)."""

    def __init__(self, part: str, *, interval_s: float = 1.0, registry: CollectorRegistry | None = None) -> None:
        self.part = part
        self.interval_s = interval_s
        self.workers: dict[str, Worker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if registry is not None:
            registry.register(_WorkerCollector(self))

    def add(
        self,
        name: str,
        *,
        alive: Callable[[], bool] = lambda: True,
        restart: Callable[[], object] | None = None,
        stuck_after_s: float | None = None,
        max_backoff_s: float = 30.0,
        restart_when_stuck: bool = False,
        logger: logging.Logger | None = None,
    ) -> Worker:
        """Register (or replace) a worker; returns it for the loop to beat and report to."""
        worker = Worker(
            name,
            alive,
            restart,
            stuck_after_s,
            max_backoff_s,
            logger or logging.getLogger(f"gridverse.{self.part}"),
            restart_when_stuck,
        )
        with self._lock:
            old = self.workers.get(name)
            if old is not None:  # keep its history across a re-registration
                worker.restarts, worker.failures = old.restarts, old.failures
            self.workers[name] = worker
        return worker

    def check(self) -> None:
        """Evaluate every worker once: log a change of state once, restart with back-off."""
        now = time.monotonic()
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            problem, kind = w.diagnose(now)
            can_restart = w.restart is not None and (kind == "dead" or (kind == "stuck" and w.restart_when_stuck))
            if problem is not None and w.problem is None:
                if can_restart:
                    then = "; restarting it"
                elif w.consecutive:
                    then = "; it keeps retrying with back-off"
                else:
                    then = "; it cannot be restarted from here (restart the process)"
                log.error("%s worker %s is down: %s%s", self.part, w.name, problem, then)
                w._restart_at = now
            elif problem is None and w.problem is not None:
                log.info("%s worker %s is up again", self.part, w.name)
                w._healthy_since = now
            w.problem = problem
            if problem is None and now - w._healthy_since > max(w._restart_backoff_s * 2, 30.0):
                w._restart_backoff_s = 1.0  # up long enough: the next failure restarts at once
            if problem is not None and can_restart and now >= w._restart_at:
                self._restart(w, now)

    def _restart(self, w: Worker, now: float) -> None:
        w.restarts += 1
        w._restart_at = now + w._restart_backoff_s
        w._restart_backoff_s = min(w._restart_backoff_s * 2, w.max_backoff_s)
        try:
            assert w.restart is not None
            w.restart()
        except Exception as exc:
            w.problem = f"{w.problem}; restart failed: {type(exc).__name__}: {exc}"
            if w.restarts == 1 or w.restarts % 10 == 0:
                log.error("%s worker %s: restart %d failed: %s", self.part, w.name, w.restarts, exc)
            return
        w._died = ""
        w._restarted_at = time.monotonic()  # a fresh worker gets a full period before it counts as stuck

    def problems(self) -> dict[str, str]:
        """What is wrong now, by worker (empty when every worker is up); evaluated when asked,
        so `/health` and `/metrics` never lag behind the last check."""
        with self._lock:
            workers = list(self.workers.values())
        found = {w.name: self._current(w) for w in workers}
        return {name: problem for name, problem in found.items() if problem is not None}

    def status(self) -> dict[str, dict[str, object]]:
        with self._lock:
            workers = list(self.workers.values())
        out: dict[str, dict[str, object]] = {}
        for w in workers:
            problem = self._current(w)
            out[w.name] = {"up": problem is None, "restarts": w.restarts, "failures": w.failures, "problem": problem}
        return out

    def _current(self, w: Worker) -> str | None:
        """Its problem now; once supervision stopped (the part is being stopped on purpose), the
        last one the watchdog saw, so a summary taken after a stop does not call everything dead."""
        return w.problem if self._stop.is_set() else w.diagnose(time.monotonic())[0]

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"watchdog-{self.part}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the watchdog itself must never die of one bad probe
                log.exception("%s watchdog check failed", self.part)

    def stop(self) -> None:
        """Stop supervising (before the workers are stopped on purpose, so none is restarted)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2 * self.interval_s + 1)
            self._thread = None


class _WorkerCollector(Collector):
    """`gridverse_<part>_worker_up`, `..._worker_restarts_total`, `..._worker_failures_total`."""

    def __init__(self, watchdog: Watchdog) -> None:
        self.watchdog = watchdog

    def collect(self) -> Iterable[Metric]:
        p = f"gridverse_{self.watchdog.part}_worker"
        up = GaugeMetricFamily(f"{p}_up", "1 while the worker runs and makes progress", labels=["worker"])
        restarts = CounterMetricFamily(f"{p}_restarts", "times the watchdog restarted it", labels=["worker"])
        failures = CounterMetricFamily(f"{p}_failures", "loop iterations that raised", labels=["worker"])
        for name, st in self.watchdog.status().items():
            up.add_metric([name], 1.0 if st["up"] else 0.0)
            restarts.add_metric([name], float(st["restarts"]))  # type: ignore[arg-type]
            failures.add_metric([name], float(st["failures"]))  # type: ignore[arg-type]
        return [up, restarts, failures]


async def in_daemon_thread(fn: Callable[..., T], *args: object) -> T:
    """`await asyncio.to_thread(fn, ...)` for slow start-up work (loading a network) in a daemon
    thread: a stop requested meanwhile does not wait for it (the executor's threads are joined
    at exit, a daemon thread is not)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=f"start-{getattr(fn, '__name__', 'work')}", daemon=True).start()
    return await future


# -- /metrics and /health ----------------------------------------------------------------------
class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class HealthServer:
    """`/metrics` (Prometheus text format) and `/health` (JSON, 200 or 503) on one port.
    `health()` returns (healthy, body); a failing body names what is wrong in `problems`."""

    def __init__(
        self, registry: CollectorRegistry, health: Callable[[], tuple[bool, dict]], host: str, port: int
    ) -> None:
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict, start_response: Callable[..., object]) -> list[bytes]:
            if environ.get("PATH_INFO") == "/health":
                try:
                    ok, body = health()
                except Exception as exc:  # a health check that breaks is itself a failure
                    ok, body = False, {"status": "failing", "problems": [f"health check raised {exc!r}"]}
                status = "200 OK" if ok else "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json")])
                return [json.dumps(body, default=str).encode()]
            return metrics_app(environ, start_response)

        self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
