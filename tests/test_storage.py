"""The recordings storage: keys that stay inside it, private files, and which node recovers what."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from relay import keys, node
from relay.app import build_app
from relay.config import Config
from relay.records.recordings import RecordingIndex, recover_unfinished
from relay.records.sealed import SealedWriter, decrypt_bytes
from relay.records.storage import BadKey, FolderStorage
from relay.records.store import Store
from relay.records.store import schema as store_schema
from relay.records.store.engine import open_database
from tests.test_recording import KEY_HEX, authorize_staff
from tests.test_recording_access import small_webm

KEY = bytes.fromhex(KEY_HEX)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "a/./b",
        ".hidden",
        "a/b/c/d/e",
        "a\\b",
        "a b",
        "x\x00y",
        "..",
        "a/..",
        "ok/" + "x" * 200,
    ],
)
def test_keys_from_outside_are_refused(tmp_path, key):
    storage = FolderStorage(tmp_path)
    with pytest.raises(BadKey):
        storage.path(key)
    with pytest.raises(BadKey):
        storage.create(key)
    with pytest.raises(ValueError):  # BadKey is a ValueError: the API answers 404, not 500
        storage.open(key)


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"x")
    root = tmp_path / "root"
    root.mkdir()
    (root / "1").symlink_to(outside)
    with pytest.raises(BadKey):
        FolderStorage(root).open("1/secret")


def test_objects_are_private_exclusive_and_durable(tmp_path):
    storage = FolderStorage(tmp_path / "shared" / "recordings")
    storage.prepare()
    out = storage.create("3/booking-1-a.webm.enc")
    out.write(b"abc")
    out.sync()
    out.write(b"def")
    out.close()
    with pytest.raises(FileExistsError):  # one writer per key: never into another's file
        storage.create("3/booking-1-a.webm.enc")
    path = storage.path("3/booking-1-a.webm.enc")
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700 and _mode(storage.root) == 0o700
    assert _mode(tmp_path / "shared") == 0o700
    with storage.open("3/booking-1-a.webm.enc") as f:
        assert f.read() == b"abcdef"
    assert storage.size("3/booking-1-a.webm.enc") == 6
    assert storage.modified("3/booking-1-a.webm.enc") <= time.time()
    assert storage.list() == ["3/booking-1-a.webm.enc"] and storage.list("4/") == []
    assert storage.delete("3/booking-1-a.webm.enc") is True
    assert storage.delete("3/booking-1-a.webm.enc") is False
    assert storage.list() == []


def test_storage_dir_moves_the_recordings_and_data_dir_stays_the_default(tmp_path):
    assert Config(data_dir=tmp_path).recordings_dir == tmp_path / "recordings"
    env = {"RELAY_DATA_DIR": str(tmp_path / "d"), "RELAY_STORAGE_DIR": str(tmp_path / "nfs")}
    assert Config.from_env(env).recordings_dir == tmp_path / "nfs" / "recordings"
    assert (
        Config(storage_dir=tmp_path / "s").replace(data_dir=tmp_path / "x").recordings_dir
        == tmp_path / "s" / "recordings"
    )


def _sealed(storage: FolderStorage, key: str, final: bool) -> int:
    writer = SealedWriter(storage.create(key), KEY, fsync=True)
    plain = small_webm()
    writer.seal(plain[: len(plain) // 2])
    writer.seal(plain[len(plain) // 2 :], final=final)
    writer.close()
    return writer.size


def test_each_node_recovers_its_own_and_the_dead_ones_only(tmp_path):
    storage = FolderStorage(tmp_path)
    index = RecordingIndex(open_database(":memory:"))
    now = time.time()
    ids = {}
    for name, who, beat in [
        ("mine", "node-a", now),
        ("busy", "node-a", now),
        ("alive", "node-b", now - 5),
        ("dead", "node-c", now - 120),
        ("legacy", None, now - 1),
    ]:
        size = _sealed(storage, f"1/{name}.webm.enc", final=False)
        ids[name] = index.add(7, 1, f"1/{name}.webm.enc", "video/webm", now - 200, now + 1e6, who)
        index.conn.execute("UPDATE recordings SET heartbeat_at = ? WHERE id = ?", (beat, ids[name]))
        assert size > 0
    done = recover_unfinished(
        index, storage, busy={"1/busy.webm.enc"}, node="node-a", stale_before=now - 60
    )
    assert sorted(done) == sorted([ids["mine"], ids["dead"], ids["legacy"]])
    status = {n: index.get(i).status for n, i in ids.items()}
    assert status == {
        "mine": "interrupted",
        "busy": "recording",
        "alive": "recording",
        "dead": "interrupted",
        "legacy": "interrupted",
    }
    dead = index.get(ids["dead"])
    assert dead.size == storage.size("1/dead.webm.enc") and len(dead.sha256) == 64
    assert [r.segment for r in index.list(booking_id=7)] == [1, 2, 3, 4, 5]


async def test_a_recording_left_by_the_previous_version_is_recovered_and_served(
    tmp_path, monkeypatch
):
    """A database and recordings folder from before nodes (schema 8, the same file layout):
    the new relay opens both, marks the unfinished recording interrupted and serves it."""
    config = Config(
        data_dir=tmp_path,
        seed_demo=False,
        vision_enabled=False,
        recording_key=KEY_HEX,
        node_id="node-a",
    )
    monkeypatch.setattr(store_schema, "MIGRATIONS", store_schema.MIGRATIONS[:8])
    old = Store.open(config.db_path)
    name = "1/booking-5-20260101T000000Z-0a1b2c3d.webm.enc"
    storage = FolderStorage(config.recordings_dir)
    _sealed(storage, name, final=False)
    old.connection.execute(
        "INSERT INTO recordings (booking_id, establishment_id, path, started_at,"
        " retention_until, status) VALUES (5, 1, ?, 1.0, 9e9, 'recording')",
        (name,),
    )
    old.close()
    monkeypatch.undo()

    app = build_app(config)
    app[keys.AUTHORIZE_STAFF] = authorize_staff
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer staff-1"}) as http:
            async with http.get(f"{base}/api/recordings?booking_id=5") as r:
                (shown,) = (await r.json())["recordings"]
            assert (shown["status"], shown["segment"]) == ("interrupted", 1)
            async with http.get(f"{base}/api/recordings/{shown['id']}/media") as r:
                assert r.status == 200
                served = await r.read()
        plain, result = decrypt_bytes(storage.open(name).read(), KEY, allow_truncated=True)
        assert served == plain and result.chunks == 2 and not result.complete
    finally:
        await server.close()


def test_node_ids_are_short_and_tame():
    assert node.node_id(Config(node_id="relay-2")) == "relay-2"
    for bad in ("Relay-2", "-a", "a-", "a_b", "x" * 33, "a.b", 'a"b'):
        with pytest.raises(ValueError, match="RELAY_NODE_ID"):
            node.node_id(Config(node_id=bad))
    assert node.from_hostname("Relay_1.prison.example", 8080) == "relay-1-8080"
    assert node.from_hostname("___", 8080) == "node-8080"
    assert node.from_hostname("a" * 60, 65535) == "a" * 26 + "-65535"
    assert node.NODE_ID.fullmatch(node.node_id(Config()))
    assert node.from_hostname(os.uname().nodename, 8081) == node.node_id(Config(port=8081))
    assert node.node_id(Config(port=8081)) != node.node_id(Config(port=8082))
    assert node.version() not in ("", "unknown")


def test_a_bad_node_id_stops_the_relay_at_start(tmp_path):
    with pytest.raises(ValueError, match="RELAY_NODE_ID"):
        build_app(
            Config(data_dir=tmp_path, seed_demo=False, vision_enabled=False, node_id="Node One")
        )


def test_two_nodes_recover_and_sweep_a_recording_once(tmp_path):
    from relay.records.retention import RetentionSweeper

    storage = FolderStorage(tmp_path / "recordings")
    conn = open_database(tmp_path / "shared.sqlite")
    index_a, index_b = (
        RecordingIndex(conn),
        RecordingIndex(open_database(tmp_path / "shared.sqlite")),
    )
    _sealed(storage, "1/gone.webm.enc", final=False)
    rec = index_a.add(9, 1, "1/gone.webm.enc", "video/webm", 1.0, 2.0, "node-c")
    trail = []

    def audit(booking, kind, detail):
        trail.append((kind, detail["recording_id"]))

    assert recover_unfinished(index_a, storage, set(), audit, "node-a", time.time() - 60) == [rec]
    assert recover_unfinished(index_b, storage, set(), audit, "node-b", time.time() - 60) == []
    config = Config(data_dir=tmp_path)
    sweep_a = RetentionSweeper(index_a, config, audit, storage=storage)
    sweep_b = RetentionSweeper(index_b, config, audit, storage=storage)
    assert sweep_a.sweep() == [rec] and sweep_b.sweep() == []
    assert trail == [("recording_interrupted", rec), ("recording_deleted", rec)]
    assert storage.list() == [] and index_b.get(rec).status == "deleted"
