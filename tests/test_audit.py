"""The audit record is tamper-evident: `gridverse audit verify` exits 0 on an intact record and
3 on every kind of tampering (modify, delete, insert, reorder, truncate the tail after a
checkpoint, replace the public key), naming the entry; appends from several processes make one
intact chain; no secret is ever written; and an action whose entry cannot be written is not
performed."""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridverse.audit import AuditError, AuditRecord, open_audit, verify_record
from gridverse.audit.record import checkpoint_message, entry_hash, key_id
from gridverse.cli import main
from gridverse.settings import load_settings
from tests.helpers import config_dir
from tests.services import free_port


def _record(tmp_path: Path, n: int = 12, every: int = 5) -> Path:
    """A record of `n` entries signed every `every` entries and on close."""
    path = tmp_path / "audit" / "audit.jsonl"
    with AuditRecord(path, tmp_path / "audit" / "audit.key", checkpoint_every=every) as record:
        for i in range(1, n + 1):
            record.append(
                f"user{i % 3}",
                "operator",
                "alarm.ack",
                f"alarm-{i}",
                source="10.0.0.7",
                before={"state": "unack"},
                after={"state": "ack"},
                reason=f"seen {i}",
            )
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _verify(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    rc = main(["audit", "verify", "--path", str(path), *extra])
    return rc, capsys.readouterr().out


def test_an_intact_record_verifies_and_the_path_checked_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _record(tmp_path)
    rc, out = _verify(path, capsys)
    assert rc == 0, out
    assert f"audit record {path.resolve()}" in out
    assert "INTACT: 12 entries, 3 signed checkpoints (last at seq 12" in out
    entries = AuditRecord(path).entries()
    assert [e.seq for e in entries] == list(range(1, 13))
    first = entries[0]
    assert (first.actor, first.role, first.source, first.action, first.target) == (
        "user1",
        "operator",
        "10.0.0.7",
        "alarm.ack",
        "alarm-1",
    )
    assert first.time.endswith("Z") and first.before == {"state": "unack"} and first.reason == "seen 1"
    # the verifier needs no private key: only <path>.pub is read
    (tmp_path / "audit" / "audit.key").unlink()
    assert _verify(path, capsys)[0] == 0


def test_a_modified_field_is_caught_and_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _record(tmp_path)
    lines = _lines(path)
    doc = json.loads(lines[2])
    doc["actor"] = "mallory"
    lines[2] = json.dumps(doc, separators=(",", ":")) + "\n"
    path.write_text("".join(lines))
    rc, out = _verify(path, capsys)
    assert rc == 3 and "BROKEN" in out
    assert "line 3, seq 3: modified" in out


def test_a_deleted_entry_is_caught_and_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _record(tmp_path)
    lines = _lines(path)
    del lines[6]  # seq 7
    path.write_text("".join(lines))
    rc, out = _verify(path, capsys)
    assert rc == 3
    assert "line 7, seq 8: follows seq 6 (line 6): seq 7 deleted" in out


def test_an_inserted_entry_with_a_recomputed_hash_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _record(tmp_path)
    lines = _lines(path)
    prev = json.loads(lines[3])  # seq 4
    forged = {**prev, "seq": 5, "actor": "mallory", "target": "breaker-7", "prev_hash": prev["hash"]}
    forged["hash"] = entry_hash(forged)
    lines.insert(4, json.dumps(forged, separators=(",", ":")) + "\n")
    path.write_text("".join(lines))
    rc, out = _verify(path, capsys)
    assert rc == 3
    assert "line 6, seq 5: comes after seq 5 (line 5): entries reordered, or one inserted here" in out


def test_an_insertion_with_the_whole_chain_recomputed_is_caught_by_the_signed_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The forger renumbers and rehashes every later entry: the chain is consistent again, but
    the signed checkpoints (which he cannot sign) name another head."""
    path = _record(tmp_path)
    docs = [json.loads(line) for line in _lines(path)]
    docs.insert(2, {**docs[1], "actor": "mallory"})
    prev = "0" * 64
    for seq, doc in enumerate(docs, start=1):
        doc.update(seq=seq, prev_hash=prev)
        doc["hash"] = prev = entry_hash(doc)
    path.write_text("".join(json.dumps(d, separators=(",", ":")) + "\n" for d in docs))
    rc, out = _verify(path, capsys)
    assert rc == 3
    assert "line 5, seq 5: differs from what checkpoint 1 signed: the chain up to here was rewritten" in out


def test_two_reordered_entries_are_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _record(tmp_path)
    lines = _lines(path)
    lines[3], lines[4] = lines[4], lines[3]  # seq 4 and 5
    path.write_text("".join(lines))
    rc, out = _verify(path, capsys)
    assert rc == 3
    assert "line 4, seq 5: follows seq 3 (line 3): seq 4 deleted or moved" in out
    assert "line 5, seq 4: comes after seq 5 (line 4): entries reordered" in out


def test_a_tail_truncated_after_a_checkpoint_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Checkpoints at seq 5, 10 and 12 (on close): cutting the record back to seq 10, a point
    where a checkpoint was signed, still leaves the signed checkpoint of seq 12."""
    path = _record(tmp_path)
    path.write_text("".join(_lines(path)[:10]))
    rc, out = _verify(path, capsys)
    assert rc == 3
    assert "seq 12: a signed checkpoint covers seq 12, but the record ends at seq 10: entries were deleted" in out
    # cut in the middle of an entry
    path.write_text("".join(_lines(path))[:-40])
    rc, out = _verify(path, capsys)
    assert rc == 3 and "line 10: the last line is cut off" in out


def test_a_replaced_public_key_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _record(tmp_path)
    pub = Path(f"{path}.pub")
    rc, out = _verify(path, capsys)
    original_id = out.split("key ")[1].split(")")[0]
    mallory = Ed25519PrivateKey.generate()
    pub.write_bytes(
        mallory.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    rc, out = _verify(path, capsys)
    assert rc == 3
    assert "the public key was replaced" in out and f"but audit.jsonl.pub is key {key_id(mallory.public_key())}" in out
    # ... and re-signing every checkpoint with the new key is caught when the auditor pins the key id
    cps = Path(f"{path}.checkpoints")
    resigned = []
    for line in cps.read_text().splitlines():
        cp = json.loads(line)
        cp["key_id"] = key_id(mallory.public_key())
        cp["signature"] = base64.b64encode(mallory.sign(checkpoint_message(cp))).decode()
        resigned.append(json.dumps(cp) + "\n")
    cps.write_text("".join(resigned))
    assert _verify(path, capsys)[0] == 0  # consistent, but by another key
    rc, out = _verify(path, capsys, "--key-id", original_id)
    assert rc == 3 and f"not the trusted {original_id}: the key was replaced" in out
    # the writer refuses to sign with a key that does not match the public key beside the record
    with pytest.raises(AuditError, match="does not belong to the signing key"):
        AuditRecord(path, tmp_path / "audit" / "audit.key", checkpoint_every=1).append(
            "alice", "operator", "alarm.ack", "x"
        )


def test_deleted_checkpoints_and_key_are_caught_when_the_interval_or_key_is_known(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleting both sidecar files leaves an unsigned chain anyone could have rewritten: the
    verifier refuses it when it knows the writer's checkpoint interval (from the configuration
    or --checkpoint-every) or the trusted key id."""
    path = _record(tmp_path)
    key = _verify(path, capsys)[1].split("key ")[1].split(")")[0]
    Path(f"{path}.checkpoints").unlink()
    Path(f"{path}.pub").unlink()
    rc, out = _verify(path, capsys, "--checkpoint-every", "5")
    assert rc == 3 and "seq 1..12: 12 entries without a signed checkpoint" in out and "were deleted" in out
    rc, out = _verify(path, capsys, "--key-id", key)
    assert rc == 3 and f"but key {key} is trusted" in out
    # the same through the configuration: audit.path is this record, checkpoint_every 5
    main_file = config_dir(
        tmp_path / "c", lambda d: d.update(audit={"path": str(path), "key_path": str(tmp_path), "checkpoint_every": 5})
    )
    assert main(["--config", str(main_file), "audit", "verify"]) == 3
    assert "checkpoints were deleted" in capsys.readouterr().out


def test_an_altered_checkpoint_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _record(tmp_path)
    cps = Path(f"{path}.checkpoints")
    lines = cps.read_text().splitlines(keepends=True)
    cp = json.loads(lines[1])
    cp["seq"] = 9
    lines[1] = json.dumps(cp) + "\n"
    cps.write_text("".join(lines))
    rc, out = _verify(path, capsys)
    assert rc == 3 and "audit.jsonl.checkpoints, line 2, seq 9: bad signature" in out


def _append_many(path: str, key: str, who: str, n: int) -> None:
    record = AuditRecord(Path(path), Path(key), checkpoint_every=7)
    for i in range(n):
        record.append(who, "operator", "alarm.ack", f"{who}-{i}")


def test_appends_from_two_processes_make_one_intact_chain(tmp_path: Path) -> None:
    path, key = tmp_path / "audit.jsonl", tmp_path / "audit.key"
    AuditRecord(path, key).append("setup", "secadm", "config.change", "audit")  # creates nothing secret yet
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), str(key), who, 60)) for who in ("p1", "p2")]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_append_many, args=(str(path), str(key), f"t{i}", 20)) for i in range(2)]
    for t in threads:
        t.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for t in threads:
        t.join(timeout=60)
    report = verify_record(path)
    assert report.ok, [str(p) for p in report.problems]
    entries = AuditRecord(path).entries()
    assert [e.seq for e in entries] == list(range(1, 162))
    targets = {e.target for e in entries}
    assert all(f"{w}-{i}" in targets for w in ("p1", "p2") for i in range(60))
    assert all(f"t{k}-{i}" in targets for k in range(2) for i in range(20))
    assert report.checkpoints >= 2  # the key was created once and shared (its id is the same in every checkpoint)


@pytest.mark.parametrize(
    "before, after",
    [
        ({"password": "hunter2"}, None),
        (None, {"user": {"name": "ann", "password_hash": "x"}}),
        (None, {"api_token": "abc"}),
        (None, {"stored": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"}),
    ],
)
def test_no_secret_is_ever_written(tmp_path: Path, before: object, after: object) -> None:
    path = tmp_path / "audit.jsonl"
    record = AuditRecord(path, tmp_path / "audit.key")
    record.append("secadm1", "secadm", "users.add", "ann", after={"role": "operator"})
    size = path.stat().st_size
    with pytest.raises(ValueError, match="never holds"):
        record.append("secadm1", "secadm", "users.passwd", "ann", before=before, after=after)
    assert path.stat().st_size == size
    assert "hunter2" not in path.read_text() and "argon2" not in path.read_text()


def test_an_unwritable_record_raises_naming_the_path_and_the_remedy(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    record = AuditRecord(blocker / "audit.jsonl", tmp_path / "audit.key")
    with pytest.raises(AuditError) as info:
        record.append("alice", "operator", "alarm.ack", "a1")
    assert str(blocker) in str(info.value) and "set audit.path to a writable file" in str(info.value)
    assert "not performed" in str(info.value)


def test_a_torn_last_line_stops_further_appends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _record(tmp_path, n=3)
    with path.open("a") as f:
        f.write('{"seq":4,"time":')
    with pytest.raises(AuditError, match="incomplete"):
        AuditRecord(path, tmp_path / "audit" / "audit.key").append("alice", "operator", "alarm.ack", "a")
    rc, out = _verify(path, capsys)
    assert rc == 3 and "line 4: the last line is cut off" in out


def test_open_audit_uses_the_configured_path_and_a_private_key(tmp_path: Path) -> None:
    settings = load_settings(config_dir(tmp_path))
    record = open_audit(settings)
    assert open_audit(settings) is record
    record.append("alice", "operator", "twin.whatif", "line 3")
    record.close()
    assert Path(settings.audit.path).is_file() and Path(f"{settings.audit.path}.pub").is_file()
    assert os.stat(settings.audit.key_path).st_mode & 0o777 == 0o600
    assert verify_record(settings.audit.path).checkpoints == 1


def _serve_inverter(port: int, stop: threading.Event) -> threading.Thread:
    """pymodbus' own simulator as a SunSpec inverter (limit 40 %, scale factor 0) in a thread,
    since `gridverse gateway write` runs its own event loop."""
    from tests.test_writes import _image, _serve

    ready = threading.Event()

    def run() -> None:
        async def serve() -> None:
            server = await _serve(port, _image(scale_factor=0, limit=40))
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await server.shutdown()

        asyncio.run(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    return thread


def test_gateway_write_is_recorded_with_before_and_after(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()

    def add_inverter(doc: dict) -> None:
        doc["gateway"]["writes_enabled"] = True
        doc["site"]["substations"].append(
            {
                "name": "pv",
                "host": "127.0.0.1",
                "port": port,
                "devices": [{"name": "INV1", "bay": "PV", "unit_id": 3, "profile": "pv_inverter_sunspec"}],
            }
        )

    main_file = config_dir(tmp_path, add_inverter)
    stop = threading.Event()
    thread = _serve_inverter(port, stop)
    try:
        argv = ["--config", str(main_file), "gateway", "write", "INV1", "DRCT1.WMaxLimPct", "60"]
        assert main([*argv, "--reason", "curtailment order 17"]) == 0
        assert main(["--config", str(main_file), "gateway", "write", "INV1", "MMXU1.TotW", "5"]) == 5
    finally:
        stop.set()
        thread.join(5)
    record = tmp_path / "audit" / "audit.jsonl"
    entries = AuditRecord(record).entries()
    assert [e.action for e in entries] == ["device.write"] * 4
    requested, done, refused_req, refused = entries
    assert requested.target == "INV1/DRCT1.WMaxLimPct" and requested.source == "cli" and requested.actor
    assert requested.before == {"value": 40.0} and requested.after == {"value": 60.0, "outcome": "requested"}
    assert requested.reason == "curtailment order 17"
    assert done.after == {"value": 60.0, "outcome": "written, read back"}
    assert refused_req.after["outcome"] == "requested"
    assert refused.after["outcome"].startswith("refused:") and "writable" in refused.after["outcome"]
    capsys.readouterr()
    assert main(["--config", str(main_file), "audit", "verify"]) == 0
    assert f"audit record {record.resolve()}" in capsys.readouterr().out


def test_a_write_whose_entry_cannot_be_written_is_not_performed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    blocker = tmp_path / "blocker"
    blocker.write_text("")

    def add_inverter(doc: dict) -> None:
        doc["gateway"]["writes_enabled"] = True
        doc["audit"] = {"path": str(blocker / "audit.jsonl"), "key_path": str(tmp_path / "k")}
        doc["site"]["substations"].append(
            {
                "name": "pv",
                "host": "127.0.0.1",
                "port": port,
                "devices": [{"name": "INV1", "bay": "PV", "unit_id": 3, "profile": "pv_inverter_sunspec"}],
            }
        )

    main_file = config_dir(tmp_path, add_inverter)
    stop = threading.Event()
    thread = _serve_inverter(port, stop)
    try:
        rc = main(["--config", str(main_file), "gateway", "write", "INV1", "DRCT1.WMaxLimPct", "60"])
        err = capsys.readouterr().err
        from tests.test_writes import LIMIT, _holding

        held = asyncio.run(_holding(port, LIMIT))
    finally:
        stop.set()
        thread.join(5)
    assert rc == 1 and f"audit record {blocker}" in err and "not performed" in err
    assert held == 40  # the device still holds the old limit


def test_audit_show_prints_the_last_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _record(tmp_path, n=4)
    assert main(["audit", "show", "--path", str(path), "--last", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].split()[0] == "3" and "alarm.ack alarm-4" in out[1]


def _audit_page() -> None:
    """Sign in through the real sign-in service (name and password from the environment), then
    draw the auditor's page."""
    import os

    import streamlit as st

    from ui import signin
    from ui.views.audit import page

    if signin.TOKEN_KEY not in st.session_state:
        token, _user = signin.service().sign_in(os.environ["AUDIT_TEST_USER"], os.environ["AUDIT_TEST_PASSWORD"])
        st.session_state[signin.TOKEN_KEY] = token
    page()


@pytest.fixture
def ui_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A configuration with an auditor and a viewer, and a record of actions by two actors."""
    import streamlit as st

    from gridverse.auth.users import UserStore

    main_file = config_dir(
        tmp_path,
        lambda d: d.update(
            auth={"users_file": str(tmp_path / "users.yaml"), "argon2_time_cost": 1, "argon2_memory_kib": 64}
        ),
    )
    settings = load_settings(main_file)
    users = UserStore(settings.auth)
    users.add("ada", "secaud", "correct horse battery")
    users.add("vic", "viewer", "staple battery horse")
    record = AuditRecord(settings.audit.path, settings.audit.key_path, checkpoint_every=2)
    for i in range(5):
        record.append("olga" if i % 2 else "omar", "operator", "alarm.ack", f"alarm-{i}", source="10.1.1.1")
    record.append("olga", "operator", "alarm.shelve", "alarm-9", after={"until": "2026-12-03T00:00:00Z"}, reason="x")
    record.close()
    monkeypatch.setenv("GRIDVERSE_CONFIG", str(main_file))
    st.cache_resource.clear()  # the UI caches its settings per process
    yield settings
    st.cache_resource.clear()


def test_the_auditor_browses_filters_and_verifies_the_record(ui_config, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("AUDIT_TEST_USER", "ada")
    monkeypatch.setenv("AUDIT_TEST_PASSWORD", "correct horse battery")
    at = AppTest.from_function(_audit_page, default_timeout=60).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert len(table) >= 6 and list(table["seq"])[0] == table["seq"].max()  # newest first
    assert {"olga", "omar"} <= set(table["actor"])
    at.multiselect(key="audit.actors").select("olga").run()
    assert set(at.dataframe[0].value["actor"]) == {"olga"}
    at.button[0].click().run()
    assert "Intact" in at.success[0].value
    # tamper with entry 3, then verify again from the page
    path = Path(ui_config.audit.path)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"alarm-2"', '"alarm-7"')
    path.write_text("".join(lines))
    at.button[0].click().run()
    assert "Broken" in at.error[0].value
    assert "line 3, seq 3: modified" in at.markdown[-1].value
    assert not at.text_input  # read-only: nothing to type into


def test_a_viewer_cannot_open_the_audit_page(ui_config, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("AUDIT_TEST_USER", "vic")
    monkeypatch.setenv("AUDIT_TEST_PASSWORD", "staple battery horse")
    at = AppTest.from_function(_audit_page, default_timeout=60).run()
    assert not at.exception
    assert "Not permitted: audit.view" in at.error[0].value
    assert not at.dataframe and not at.button


def test_twin_n1_from_the_command_line_is_recorded_before_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The request is recorded before any work: even a run that then fails (here, on a network
    file that is not one, so the test needs no power-flow run) leaves its entry."""
    grid = tmp_path / "grid.json"
    grid.write_text("{}")
    main_file = config_dir(tmp_path, lambda d: d["site"].update(network={"file": str(grid)}))
    assert main(["--config", str(main_file), "twin", "n1", "--top", "3"]) == 1
    assert "network error" in capsys.readouterr().err
    (entry,) = AuditRecord(tmp_path / "audit" / "audit.jsonl").entries()
    assert (entry.action, entry.target, entry.source) == ("twin.n1", str(grid), "cli")
    assert entry.after == {"at": None, "top": 3} and entry.actor


def test_twin_n1_refuses_a_bad_time_and_a_time_for_a_network_without_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--at` is checked like every time on the command line, and asking for a profile moment of
    a network that has no profiles is refused (before, it was silently ignored)."""
    import pandapower as pp
    import pandapower.networks as pn

    grid = tmp_path / "grid.json"
    pp.to_json(pn.example_simple(), str(grid))
    main_file = config_dir(tmp_path, lambda d: d["site"].update(network={"file": str(grid)}))
    with pytest.raises(SystemExit):
        main(["--config", str(main_file), "twin", "n1", "--at", "yesterday-ish"])
    assert "give an ISO time" in capsys.readouterr().err
    assert main(["--config", str(main_file), "twin", "n1", "--at", "2026-01-05T12:00:00Z"]) == 2
    assert "--at needs load profiles" in capsys.readouterr().err
