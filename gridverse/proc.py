"""Child processes that never outlive the stack.

A child is started in its own process group (so a terminal's Ctrl-C reaches only the stack,
which stops the child in order) through this module as a launcher: the launcher asks Linux to
send it SIGTERM when its parent dies (`prctl(PR_SET_PDEATHSIG)`), and a watcher thread does the
same on any platform by noticing that its parent process changed. `stop_child` terminates the
whole group, then kills it when it does not exit in time.

    python -m gridverse.proc --parent <pid> [--pdeathsig] -- <program> <args...>
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1


def spawn_child(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `cmd` (a `python -m <module> ...` command) in its own process group, tied to this
    process's life. Call it from the main thread: Linux's parent-death signal follows the thread
    that forked."""
    pdeathsig = threading.current_thread() is threading.main_thread() and sys.platform.startswith("linux")
    launcher = [sys.executable, "-m", "gridverse.proc", "--parent", str(os.getpid())]
    if pdeathsig:
        launcher.append("--pdeathsig")
    return subprocess.Popen([*launcher, "--", *cmd], env=env, start_new_session=True)


def stop_child(proc: subprocess.Popen[bytes], timeout: float = 3.0) -> int | None:
    """SIGTERM the child's process group, wait up to `timeout`, then SIGKILL the group."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(2.0)
    # helpers the child started in its group go too (its leader may be gone already)
    _signal_group(proc.pid, signal.SIGKILL)
    return proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _die_with_parent(parent: int, pdeathsig: bool) -> None:
    """SIGTERM this process when `parent` goes (at once through prctl, within 0.5 s otherwise)."""
    if pdeathsig:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5.0)  # a child that ignores SIGTERM does not outlive its parent either
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> None:
    split = argv.index("--")
    options, cmd = argv[:split], argv[split + 1 :]
    parent = int(options[options.index("--parent") + 1])
    _die_with_parent(parent, "--pdeathsig" in options)
    if len(cmd) >= 3 and cmd[0] == sys.executable and cmd[1] == "-m":
        sys.argv = [cmd[2], *cmd[3:]]
        runpy.run_module(cmd[2], run_name="__main__", alter_sys=True)
    else:
        os.execvp(cmd[0], cmd)  # the parent-death signal survives exec; the watcher does not


if __name__ == "__main__":
    main(sys.argv[1:])
