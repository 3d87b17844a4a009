"""The retention sweeps on a cluster: three relay nodes (``python -m relay`` subprocesses) on
one real Redis and one shared store (a SQLite file in WAL mode, or PostgreSQL), each with a sweep every half second. Only
the holder of the "retention" duty purges: every expired recording, face enrolment and
vetting photo goes once, with one audit record each. When the holder drains (SIGTERM) and
then when the next holder is killed (``kill -9``), another node takes the duty over and
purges what expires next (relay/cluster/duties.py, docs/multinode.md)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from bench.multinode import node_env, seed_calls, stop_nodes
from bench.relay_spawn import RelayProcess, free_port, start_relay
from relay.records import audit
from relay.records.recordings import RecordingIndex
from relay.records.store import Store
from relay.records.store.base import transaction
from tests.redis_server import redis_server

DAY = 86400.0
SWEEP_S = "0.5"  # every node would sweep twice a second, were it not for the duty
RECORDINGS = 4  # per round
DUTY_KEY = "relay:duty:retention"


class Expired:
    """What one round puts past its retention in the shared store: recordings (rows and
    files), a face enrolment (row and file) and a decided application's two photos."""

    def __init__(self, store: Store, data: Path, round_no: int, booking: int, now: float) -> None:
        db = store.connection
        self.est = int(db.execute("SELECT id FROM establishments").fetchone()[0])
        staff = int(db.execute("SELECT id FROM staff").fetchone()[0])
        prisoner = int(db.execute("SELECT MIN(id) FROM prisoners").fetchone()[0])
        index = RecordingIndex(db)
        (data / "recordings").mkdir(exist_ok=True)
        self.recordings: list[int] = []
        self.files: list[Path] = []
        for i in range(RECORDINGS):
            name = f"round{round_no}-{i}.webm"
            (data / "recordings" / name).write_bytes(b"sealed bytes")
            rid = index.add(booking, self.est, name, "video/webm", now - 100 * DAY, now - 1)
            index.finish(rid, now - 100 * DAY + 60, 12, "00" * 32, "complete")
            self.recordings.append(rid)
            self.files.append(data / "recordings" / name)
        faces = data / "faces"
        faces.mkdir(exist_ok=True)
        self.subject = 1000 + round_no
        (faces / f"face-{round_no}.sealed").write_bytes(b"sealed face")
        self.files.append(faces / f"face-{round_no}.sealed")
        with transaction(db):
            db.execute(
                "INSERT INTO face_enrolments (subject_kind, subject_id, establishment_id, path,"
                " enrolled_at, enrolled_by, retention_until, face_px, sharpness, brightness)"
                " VALUES ('prisoner', ?, ?, ?, ?, 'staff:1', ?, 120, 1.0, 0.5)",
                (self.subject, self.est, f"face-{round_no}.sealed", now - 400 * DAY, now - 1),
            )
        decided = now - 400 * DAY
        visitor, _ = store.add_visitor(f"Aunt {round_no}", "1980-01-01", True, decided)
        account = store.add_verified_account(f"aunt{round_no}@example.org", "x", visitor, decided)
        self.application = store.create_application(
            account_id=account,
            visitor_id=visitor,
            prisoner_id=prisoner,
            relationship="aunt",
            date_of_birth="1980-01-01",
            address="1 Road",
            member_ids=[],
            now=decided,
        )
        (data / "vetting").mkdir(exist_ok=True)
        for kind in ("identity", "face"):
            path = data / "vetting" / f"{round_no}-{kind}.sealed"
            path.write_bytes(b"sealed photo")
            store.put_photo(self.application, kind, str(path), "00" * 32, 12, decided)
            self.files.append(path)
        store.submit_application(self.application, decided)
        store.decide_application(self.application, staff, False, "not known", decided)

    def purged(self, store: Store) -> bool:
        db = store.connection
        marks = ", ".join("?" for _ in self.recordings)
        left = db.execute(
            f"SELECT COUNT(*) FROM recordings WHERE id IN ({marks}) AND status != 'deleted'",
            self.recordings,
        ).fetchone()[0]
        faces = db.execute(
            "SELECT COUNT(*) FROM face_enrolments WHERE subject_id = ?", (self.subject,)
        ).fetchone()[0]
        photos = db.execute(
            "SELECT COUNT(*) FROM vetting_photos WHERE application_id = ?", (self.application,)
        ).fetchone()[0]
        return left == faces == photos == 0 and not any(f.exists() for f in self.files)

    def audited_once(self, store: Store) -> None:
        """One audit record per purged item, none twice."""
        rows = store.connection.execute(
            "SELECT kind, detail FROM audit WHERE kind IN"
            " ('recording_deleted', 'face_enrolment_deleted', 'vetting_photo_deleted')"
        ).fetchall()
        seen = [(kind, json.loads(detail)) for kind, detail in rows]
        recs = [d["recording_id"] for k, d in seen if k == "recording_deleted"]
        for rid in self.recordings:
            assert recs.count(rid) == 1, (rid, recs)
        faces = [d["subject_id"] for k, d in seen if k == "face_enrolment_deleted"]
        assert faces.count(self.subject) == 1, faces
        photos = [
            d["kind"]
            for k, d in seen
            if k == "vetting_photo_deleted" and d["application"] == self.application
        ]
        assert sorted(photos) == ["face", "identity"], photos


def swept_in(node: RelayProcess, booking: int) -> int:
    """How many of a round's recordings (all on ``booking``) the node's own log says it
    deleted."""
    text = Path(node.log_path).read_text()
    return sum(
        1
        for line in text.splitlines()
        if "retention: deleted recording" in line and f"(booking {booking})" in line
    )


async def _until(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def _duty_gauges(nodes: dict[str, RelayProcess], gone: list[str]) -> dict[str, float]:
    """Each live node's ``relay_cluster_duty_held{duty="retention"}`` from its /metrics."""
    held = {}
    async with aiohttp.ClientSession() as http:
        for name, node in nodes.items():
            if name in gone:
                continue
            async with http.get(node.url + "/metrics") as r:
                text = await r.text()
            line = next(
                x
                for x in text.splitlines()
                if x.startswith('relay_cluster_duty_held{duty="retention"}')
            )
            held[name] = float(line.split()[-1])
    return held


async def _holder(redis: Redis, not_: str | None = None, timeout: float = 30.0) -> str:
    started = time.monotonic()
    while True:
        node = await redis.get(DUTY_KEY)
        if node is not None and node != not_:
            return node
        if time.monotonic() - started > timeout:
            raise AssertionError(f"nobody took the retention duty (still {node})")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_one_node_purges_once_and_another_takes_over_on_drain_and_kill(
    tmp_path, engine, request
):
    """SQLite: one WAL file the three processes share; PostgreSQL: what nodes on several
    machines use (tests/postgres.py)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    database_url = request.getfixturevalue("pg_url") if engine == "postgres" else ""
    db_target = database_url or data / "relay.sqlite"
    # one booking per round, so each round's log lines can be told apart by booking id
    seeded, _ = seed_calls(db_target, 3, time.time())
    bookings = [c.booking_id for c in seeded]
    env = {"RELAY_RETENTION_SWEEP_S": SWEEP_S}
    store = Store.open(db_target)
    nodes: dict[str, RelayProcess] = {}
    with redis_server(tmp_path / "redis") as redis_url:
        redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            nodes["n1"] = await start_relay(
                data, free_port(), {**node_env(redis_url, "n1", database_url), **env}
            )
            started = await asyncio.gather(
                *[
                    start_relay(data, free_port(), {**node_env(redis_url, n, database_url), **env})
                    for n in ("n2", "n3")
                ]
            )
            nodes.update(zip(("n2", "n3"), started, strict=True))
            holder = await _holder(redis)

            gone: list[str] = []
            for round_no, booking in enumerate(bookings):
                # each round's recordings on their own booking: the logs say who swept what
                expired = Expired(store, data, round_no, booking, time.time())
                took = await _until(lambda e=expired: e.purged(store), 40, f"round {round_no}")
                print(f"\nround {round_no}: {holder} purged everything in {took:.1f}s")
                await asyncio.sleep(1.5)  # three more sweeps' worth: would a second run audit?
                expired.audited_once(store)
                assert swept_in(nodes[holder], booking) == RECORDINGS
                for name, node in nodes.items():
                    if name != holder:
                        assert swept_in(node, booking) == 0, name
                if round_no == 0:  # the holder drains: the duty is handed over at once
                    nodes[holder].proc.send_signal(signal.SIGTERM)
                    nodes[holder].proc.wait(20)
                elif round_no == 1:  # kill -9: the lease runs out (node_expiry_s) first
                    nodes[holder].proc.send_signal(signal.SIGKILL)
                    nodes[holder].proc.wait(10)
                else:
                    break
                gone.append(holder)
                t0 = time.monotonic()
                holder = await _holder(redis, not_=holder)
                print(f"duty taken over by {holder} in {time.monotonic() - t0:.1f}s")
                assert holder not in gone
                # the node's own gauge says so too (the refresh that took it set it)
                await asyncio.sleep(0.5)
                held = await _duty_gauges(nodes, gone)
                assert held == {n: (1.0 if n == holder else 0.0) for n in held}, held
            assert audit.verify(store.connection).ok  # three writers, one chain
            for node in nodes.values():
                log = Path(node.log_path).read_text()
                assert "Traceback" not in log and "retention sweep" not in log, log[-2000:]
        finally:
            stop_nodes(nodes)
            await redis.aclose()
            store.close()
