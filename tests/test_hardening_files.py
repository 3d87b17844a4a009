"""Issue 21, files: the data folder 0700, every secret and the database 0600, a readable
secret or database refused at start with one line that says how to fix it, and recordings
under the data folder by default."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from relay import keys, private
from relay.app import build_app
from relay.config import Config
from relay.records.store import Store
from tests.test_recording_crash import ROOT


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _config(data: Path, **changes: object) -> Config:
    return Config(data_dir=data, seed_demo=False, vision_enabled=False, **changes)


def test_fresh_data_folder_is_private(tmp_path):
    data = tmp_path / "deep" / "data"
    app = build_app(_config(data))
    try:
        assert _mode(data) == 0o700
        made = {p.name: _mode(p) for p in data.iterdir() if p.is_file()}
        assert set(made) >= {
            "secret.key",
            "recording.key",
            "relay.sqlite",
            "relay.sqlite-wal",
            "relay.sqlite-shm",
        }, made
        assert set(made.values()) == {0o600}, made
        assert _mode(data / "recordings") == 0o700
    finally:
        app[keys.STORE].close()


@pytest.mark.parametrize(
    "name", ["secret.key", "recording.key", "relay.sqlite", "relay.sqlite-wal"]
)
def test_readable_secret_or_database_is_refused(tmp_path, name):
    data = tmp_path / "data"
    build_app(_config(data))[keys.STORE].close()  # makes every file, privately
    target = data / name
    if not target.exists():
        target.write_bytes(b"")
    os.chmod(target, 0o644)
    with pytest.raises(private.NotPrivate, match=rf"chmod 600 {target}"):
        build_app(_config(data))[keys.STORE].close()


def test_readable_tls_key_is_refused(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("not read: refused first")
    os.chmod(key, 0o640)
    with pytest.raises(private.NotPrivate, match="TLS private key"):
        build_app(_config(tmp_path / "data", tls_cert=str(tmp_path / "c"), tls_key=str(key)))


def test_store_on_its_own_is_private_too(tmp_path):
    store = Store.open(tmp_path / "new" / "x.sqlite")
    store.close()
    assert _mode(tmp_path / "new") == 0o700
    assert _mode(tmp_path / "new" / "x.sqlite") == 0o600


def test_relay_refuses_to_start_with_one_clear_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret.key").write_text("a" * 64 + "\n")
    os.chmod(data / "secret.key", 0o644)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RELAY_DATA_DIR": str(data),
        "RELAY_VISION_ENABLED": "0",
        "RELAY_PORT": "0",
    }
    out = subprocess.run(
        [sys.executable, "-m", "relay"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "secret.key" in lines[0] and "readable by other users (mode 644)" in lines[0]
    assert f"chmod 600 {data / 'secret.key'}" in lines[0]
    assert not (data / "relay.sqlite").exists(), "refused before the database was made"


def test_recordings_default_under_the_data_folder(tmp_path):
    env = {"RELAY_DATA_DIR": str(tmp_path / "d")}
    assert Config.from_env(env).recordings_dir == tmp_path / "d" / "recordings"
    assert Config().recordings_dir == Path("data") / "recordings"
    assert Config().replace(data_dir=tmp_path).recordings_dir == tmp_path / "recordings"
    explicit = Config.from_env({**env, "RELAY_RECORDINGS_DIR": str(tmp_path / "r")})
    assert explicit.recordings_dir == tmp_path / "r"
    assert explicit.replace(data_dir=tmp_path / "e").recordings_dir == tmp_path / "r"
