"""Who may read recordings, what is written down about it, and how long recordings live."""

from __future__ import annotations

import time

import aiohttp
import pytest

from protocol.webm import STREAMS, webm_clusters, webm_header
from relay import keys
from relay.app import build_app
from relay.records import recordings
from relay.records.retention import RetentionSweeper
from relay.records.sealed import SealedWriter, decrypt_bytes
from tests.support import tone_clip, video_clip
from tests.test_recording import KEY_HEX, TRAIL, demux, rec_relay  # noqa: F401 (rec_relay: fixture)

DAY = 86400.0
STAFF1 = {"Authorization": "Bearer staff-1"}
ELSEWHERE = {"Authorization": "Bearer staff-elsewhere"}


def small_webm() -> bytes:
    """A real two-second recording made by the recorder's writer from the test clips."""
    video, audio = video_clip(seed=1), tone_clip(440)
    frames = []
    for n, (_role, kind) in enumerate(STREAMS, start=1):
        clip, step = (video, 1000 / 30) if kind == "video" else (audio, 20)
        frames += [(int(i * step), n, f.keyframe, f.data) for i, f in enumerate(clip[:50])]
    frames.sort(key=lambda f: f[0])
    return webm_header({"family": (320, 240), "prison": (320, 240)}, "test", time.time()) + \
        webm_clusters(frames)


def add_recording(app, booking_id, establishment_id=1, started_days_ago=1.0, days=90,
                  status="complete") -> int:
    config = app[keys.CONFIG]
    name = f"{establishment_id}/booking-{booking_id}-{time.monotonic_ns()}.webm.enc"
    path = config.recordings_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = SealedWriter(path, bytes.fromhex(KEY_HEX), fsync=False)
    plain = small_webm()
    half = len(plain) // 2
    writer.seal(plain[:half])
    writer.seal(plain[half:], final=status == "complete")
    writer.close()
    started = time.time() - started_days_ago * DAY
    index = app[keys.RECORDING_INDEX]
    rec_id = index.add(booking_id, establishment_id, name, "video/webm", started, started + days * DAY)
    index.finish(rec_id, started + 60, writer.size, writer.sha256.hexdigest(), status)
    return rec_id


@pytest.fixture
async def api(rec_relay):  # noqa: F811 (the imported fixture, by name)
    """test_recording's relay (with this module's rec_config) and an HTTP session."""
    async with aiohttp.ClientSession() as http:
        rec_relay.http = http
        yield rec_relay


@pytest.fixture
def rec_config(config):
    return config.replace(recording_key=KEY_HEX)


def audits(app, kind):
    return [(b, d) for b, k, d in app[TRAIL] if k == kind]


async def test_unauthorised_requests_are_refused_and_logged(api):
    app, http, base = api.app, api.http, api.base_url
    rec = add_recording(app, booking_id=5)
    other = add_recording(app, booking_id=6, establishment_id=2)
    resp = await http.get(f"{base}/api/recordings")
    assert resp.status == 401
    resp = await http.get(f"{base}/api/recordings/{rec}/media")
    assert resp.status == 401
    resp = await http.get(f"{base}/api/recordings/{rec}/media", headers={"Authorization": "Bearer x"})
    assert resp.status == 403
    resp = await http.get(f"{base}/api/recordings/999/media")
    assert resp.status == 401, "strangers cannot tell which recordings exist"
    # staff of another establishment can neither download nor hold it, and cannot tell it
    # from an unknown id: the same 404 and body (issue 21)
    unknown = await http.get(f"{base}/api/recordings/999/media", headers=ELSEWHERE)
    assert unknown.status == 404
    for method, path in (("GET", ""), ("GET", "/media"), ("POST", "/hold")):
        resp = await http.request(method, f"{base}/api/recordings/{rec}{path}",
                                  headers=ELSEWHERE, json={"reason": "x"})
        assert resp.status == 404, (method, path)
        assert await resp.json() == await unknown.json()
    refused = audits(app, "recording_access_refused")
    assert [(b, d["action"], d["refused"]) for b, d in refused] == [
        (0, "list", 401), (5, "download", 401), (5, "download", 403), (0, "download", 401),
        (5, "view", 404), (5, "download", 404), (5, "hold", 404)]
    assert refused[4][1]["staff"] == "staff-9"
    assert not audits(app, "recording_download")
    # a list shows only the staff member's establishment, and is itself logged
    resp = await http.get(f"{base}/api/recordings", headers=STAFF1)
    listed = (await resp.json())["recordings"]
    assert [r["id"] for r in listed] == [rec] and "path" not in listed[0]
    assert audits(app, "recording_list")[-1][1]["recording_ids"] == [rec]
    assert other not in [r["id"] for r in listed]
    # without a staff check configured, nobody gets in
    del app[keys.AUTHORIZE_STAFF]  # the app is frozen for routes, not for this key
    resp = await http.get(f"{base}/api/recordings/{rec}", headers=STAFF1)
    assert resp.status == 403


async def test_download_decrypts_and_detects_tampering(api):
    app, http, base = api.app, api.http, api.base_url
    rec_id = add_recording(app, booking_id=8)
    resp = await http.get(f"{base}/api/recordings/{rec_id}/media", headers=STAFF1)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    plain = await resp.read()
    streams, packets = demux(plain)
    assert len(streams) == 4 and len(packets[0]) == 50
    assert audits(app, "recording_download")[-1] == (
        8, {"staff": "staff-1", "recording_id": rec_id, "result": "started"})
    # one flipped bit in the ciphertext: the download stops and the trail says why
    rec = app[keys.RECORDING_INDEX].get(rec_id)
    path = recordings.recording_path(app[keys.CONFIG], rec)
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(aiohttp.ClientPayloadError):
        resp = await http.get(f"{base}/api/recordings/{rec_id}/media", headers=STAFF1)
        await resp.read()
    assert audits(app, "recording_integrity_failure")


async def test_interrupted_recording_downloads_what_was_written(api):
    app, http, base = api.app, api.http, api.base_url
    rec_id = add_recording(app, booking_id=9, status="interrupted")
    resp = await http.get(f"{base}/api/recordings/{rec_id}/media", headers=STAFF1)
    assert resp.status == 200 and resp.headers["X-Recording-Status"] == "interrupted"
    body = await resp.read()
    rec = app[keys.RECORDING_INDEX].get(rec_id)
    raw = recordings.recording_path(app[keys.CONFIG], rec).read_bytes()
    assert body == decrypt_bytes(raw, bytes.fromhex(KEY_HEX), allow_truncated=True)[0]
    assert len(body) > 1000 and body.startswith(b"\x1a\x45\xdf\xa3")  # the first half


async def test_retention_deletes_expired_unless_on_legal_hold(api):
    app, http, base = api.app, api.http, api.base_url
    index = app[keys.RECORDING_INDEX]
    expired = add_recording(app, booking_id=1, started_days_ago=91)
    held = add_recording(app, booking_id=2, started_days_ago=91)
    fresh = add_recording(app, booking_id=3, started_days_ago=10)
    short = add_recording(app, booking_id=4, started_days_ago=10, days=7)  # establishment: 7 days
    resp = await http.post(f"{base}/api/recordings/{held}/hold", headers=STAFF1, json={})
    assert resp.status == 400, "a hold needs a reason"
    resp = await http.post(f"{base}/api/recordings/{held}/hold", headers=STAFF1,
                           data='{"reason": "x"}')  # text/plain: what a cross-site form sends
    assert resp.status == 415
    resp = await http.post(f"{base}/api/recordings/{held}/hold", headers=STAFF1,
                           json={"reason": "complaint 42"})
    assert resp.status == 200 and (await resp.json())["legal_hold"] is True
    sweeper: RetentionSweeper = app[keys.RETENTION]
    assert sorted(sweeper.sweep()) == [expired, short]
    paths = {r: recordings.recording_path(app[keys.CONFIG], index.get(r)) for r in (expired, held, fresh)}
    assert not paths[expired].exists() and paths[held].exists() and paths[fresh].exists()
    assert index.get(expired).status == "deleted"
    deleted = audits(app, "recording_deleted")
    assert sorted((b, d["recording_id"], d["reason"]) for b, d in deleted) == [
        (1, expired, "retention"), (4, short, "retention")]
    # a deleted recording is gone for staff too
    resp = await http.get(f"{base}/api/recordings/{expired}/media", headers=STAFF1)
    assert resp.status == 410
    # the hold survives the purge until released; the next sweep then deletes it
    assert sweeper.sweep() == []
    resp = await http.delete(f"{base}/api/recordings/{held}/hold", headers=STAFF1)
    assert resp.status == 200 and (await resp.json())["legal_hold"] is False
    assert sweeper.sweep() == [held]
    assert not paths[held].exists()
    kinds = [k for _, k, _ in app[TRAIL]]
    assert kinds.count("recording_hold_placed") == 1 and kinds.count("recording_hold_released") == 1
    # a sweep a year on leaves files being written alone
    later = RetentionSweeper(index, app[keys.CONFIG], busy=lambda: {index.get(fresh).path},
                             clock=lambda: time.time() + 365 * DAY)
    assert later.sweep() == []


async def test_recording_key_file_is_made_once_and_private(tmp_path, config, tokens):
    cfg = config.replace(recording_key="")
    app = build_app(cfg, admit=tokens)
    recorder = app[keys.RECORDER]
    key_file = cfg.data_dir / "recording.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert bytes.fromhex(key_file.read_text().strip()) == recorder.key
    app2 = build_app(cfg, admit=tokens)
    assert app2[keys.RECORDER].key == recorder.key
    recorder.executor.shutdown()
    app2[keys.RECORDER].executor.shutdown()
    plain, _ = decrypt_bytes(_seal(tmp_path, recorder.key, b"x"), recorder.key)
    assert plain == b"x"


def _seal(tmp_path, key, data) -> bytes:
    path = tmp_path / "one.enc"
    writer = SealedWriter(path, key, fsync=False)
    writer.seal(data, final=True)
    return path.read_bytes()
