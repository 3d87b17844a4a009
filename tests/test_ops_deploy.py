"""The deployment files in deploy/: a unit systemd accepts, settings the relay knows, a proxy
that carries WebSockets to the node that owns a call."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from relay import node
from relay.config import ENV_PREFIX, Config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "visitrelay.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "relay.env.example"
NGINX = DEPLOY / "nginx" / "visitrelay.conf"


def _systemd_analyze(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is required (Debian package systemd; scripts/system-deps)")
    # the unit as installed, but with this checkout's Python: verify checks ExecStart exists
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/visitrelay/.venv/bin/python", sys.executable))
    return subprocess.run([tool, *args, str(unit)], capture_output=True, text=True, timeout=120)


def test_systemd_accepts_the_unit(tmp_path):
    done = _systemd_analyze(tmp_path, "verify", "--man=no")
    assert done.returncode == 0 and not done.stderr.strip(), done.stdout + done.stderr


def test_the_unit_is_hardened(tmp_path):
    text = UNIT.read_text()
    for line in (
        "User=visitrelay",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "StateDirectoryMode=0700",
        "RuntimeDirectoryMode=0700",
        "UMask=0077",
        "EnvironmentFile=/etc/visitrelay/relay.env",
        "CapabilityBoundingSet=\n",
        "RequiresMountsFor=/srv/visitrelay/shared",
        "KillSignal=SIGTERM",
    ):
        assert line in text, line
    done = _systemd_analyze(tmp_path, "security", "--offline=yes", "--no-pager")
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert level, done.stdout + done.stderr
    assert float(level.group(1)) < 2.0, done.stdout


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def test_every_setting_named_is_one_the_relay_reads():
    env = _env_file(ENV_EXAMPLE)
    env.update(re.findall(r"^Environment=(RELAY_\w+)=(.*)$", UNIT.read_text(), re.MULTILINE))
    known = {ENV_PREFIX + f.upper() for f in Config.__dataclass_fields__}
    unknown = set(env) - known
    assert not unknown, f"not relay settings: {sorted(unknown)}"
    config = Config.from_env({k: v for k, v in env.items() if k in known})
    assert node.node_id(config) == "relay-1"
    assert config.recordings_dir == Path("/srv/visitrelay/shared/recordings")
    assert config.media_mux and config.metrics_host == config.host
    assert config.public_url in env["RELAY_ALLOWED_ORIGINS"].split(",")
    for secret in ("RELAY_SECRET_KEY", "RELAY_RECORDING_KEY", "RELAY_TURN_SECRET"):
        assert env[secret] == "", f"{secret}: the example must not ship a secret"
    assert "/srv/visitrelay/shared" in env["RELAY_FACES_DIR"] + env["RELAY_VETTING_DIR"]


def test_the_proxy_sends_each_node_name_to_its_node_and_keeps_websockets():
    text = NGINX.read_text()
    assert text.count("{") == text.count("}")
    upstreams = set(re.findall(r"^upstream (\w+)", text, re.MULTILINE))
    mapping = dict(re.findall(r"^\s+(relay-\d+\.calls\.example\.org)\s+(\w+);", text, re.MULTILINE))
    assert mapping and set(mapping.values()) <= upstreams
    names = re.search(r"listen 443.*?server_name([^;]+);", text, re.DOTALL).group(1).split()
    assert set(mapping) <= set(names) and "calls.example.org" in names
    ws = re.search(r"location /ws \{(.*?)\}", text, re.DOTALL).group(1)
    assert "proxy_set_header Upgrade $http_upgrade" in ws
    assert "proxy_set_header Connection $connection_upgrade" in ws
    assert "proxy_pass http://$visitrelay_upstream" in ws
    assert "location = /metrics { return 404; }" in text
    # the same nodes everywhere: one per-node upstream per Prometheus target
    targets = re.findall(
        r"- relay-\d+\.internal:9108", (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    )
    assert len(targets) == len(mapping) == len(upstreams) - 1
