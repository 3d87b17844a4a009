"""The prison command behind a firewall that only lets TURN over TLS out, to a coturn whose
certificate a private CA signed: ``--turn-ca FILE`` makes the command trust that CA (and only
it) for ``turns:``. A real coturn over TLS on loopback (tests/coturn.py), the relay handing out
only its ``turns:`` URL with relay-only candidates, and the command's own code path: its
arguments parsed, its token fetched with the laptop's credentials, its client built."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys

import pytest

from bench.product import start_product
from protocol import prison
from protocol.aiortc_glue import selected_candidate_types, selected_turn_tls
from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay import tls
from tests.coturn import coturn
from tests.support import tone_clip, video_clip
from tests.test_prison_cli import write_clip
from tests.test_prison_command import ROOT

SECRET = "test-turn-ca-secret"
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")


def _laptop_argv(product, booking: int, *extra: str) -> list[str]:
    laptop_id, secret = product.world.laptops_a[0]
    return [
        "--relay",
        product.url,
        "--laptop-id",
        str(laptop_id),
        "--laptop-secret",
        secret,
        "--booking",
        str(booking),
        *extra,
    ]


def _family(product, token: str, seed: int) -> CallClient:
    return CallClient(
        product.url,
        token,
        receive="count",
        video=EncodedTrack("video", video_clip(seed=seed), 30),
        audio=EncodedTrack("audio", tone_clip(300 + 40 * seed), 50),
    )


def test_turn_ca_that_is_not_a_readable_certificate_is_one_clear_line(tmp_path, capsys):
    cert, key = tls.generate(tmp_path / "tls", ("127.0.0.1",), days=1)
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    binary = tmp_path / "binary.der"
    binary.write_bytes(b"\x30\x82\xff\xfe" * 64)
    base = ["--relay", "http://127.0.0.1:9", "--token", "t"]
    cases = [
        (tmp_path / "missing.pem", "cannot read the TURN CA file", "No such file"),
        (tmp_path, "cannot read the TURN CA file", "Is a directory"),
        (binary, "cannot read the TURN CA file", "not a text file"),
        (key, "holds no valid PEM certificate", str(key)),  # a private key is no certificate
        (broken, "holds no valid PEM certificate", str(broken)),
    ]
    for path, what, detail in cases:
        with pytest.raises(SystemExit) as exit_:
            prison.parse_args([*base, "--turn-ca", str(path)])
        assert exit_.value.code == prison.EXIT_REFUSED
        err = capsys.readouterr().err
        assert "argument --turn-ca: " in err and what in err and detail in err, err
        assert "Traceback" not in err
    with pytest.raises(SystemExit):
        prison.parse_args([*base, "--turn", "udp", "--turn-ca", str(cert)])
    assert "needs --turn tls, not udp" in capsys.readouterr().err
    args = prison.parse_args([*base, "--turn-ca", str(cert)])  # implies --turn tls
    assert args.turn == "tls" and isinstance(args.turn_ca, ssl.SSLContext)
    assert args.turn_ca.verify_mode == ssl.CERT_REQUIRED and args.turn_ca.check_hostname
    assert args.turn_ca.cert_store_stats()["x509"] == 1  # the bundle only, no system store


async def test_prison_command_reaches_the_relay_through_turns_with_a_private_ca(
    tmp_path, monkeypatch
):
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):  # the trust comes from --turn-ca alone
        monkeypatch.delenv(name, raising=False)
    clip = tmp_path / "clip.webm"
    write_clip(clip, seconds=4)
    async with coturn(SECRET, with_tls=True) as running:
        urls = (f"turns:127.0.0.1:{running.tls_port}?transport=tcp",)
        product = await start_product(
            tmp_path, turn_urls=urls, turn_secret=SECRET, ice_relay_only=True
        )
        try:
            # 1. in this process: arguments -> token -> the command's client, relayed over TLS
            booking = product.booking_now(seconds=300)
            family = _family(product, await product.family_token(booking), seed=1)
            await family.join()
            args = prison.parse_args(
                _laptop_argv(
                    product, booking, "--file", str(clip), "--loop", "--turn-ca", str(running.ca)
                )
            )
            token = await prison.fetch_token(
                args.relay, args.laptop_id, args.laptop_secret, args.booking
            )
            laptop = prison.make_client(args, token)
            try:
                await laptop.join()
                assert laptop.ice["ice_servers"][0]["urls"] == list(urls)
                sdp = laptop._pc.localDescription.sdp
                assert "typ relay" in sdp and "typ host" not in sdp
                await laptop.wait_frames("video0", 30, timeout=40)
                await family.wait_frames("video0", 30, timeout=40)
                assert selected_candidate_types(laptop._pc) == ["relay"]
                (version,) = selected_turn_tls(laptop._pc)
                assert version in TLS_VERSIONS  # the media's allocation is the one over TLS
            finally:
                await laptop.close()
                await family.close()

            # 2. the same command without --turn-ca: coturn's certificate is not trusted, so
            # there is no relayed candidate, and relay-only leaves none at all
            booking = product.booking_now(seconds=300)
            untrusting = prison.make_client(
                prison.parse_args(_laptop_argv(product, booking, "--turn", "tls")),
                await prison.fetch_token(product.url, args.laptop_id, args.laptop_secret, booking),
            )
            untrusting.reconnect = False
            try:
                await untrusting.join()
                assert "a=candidate" not in untrusting._pc.localDescription.sdp
            finally:
                await untrusting.close()

            # 3. the real command as an operator runs it: relay-only and only a turns: URL,
            # so any media at all went through coturn over TLS
            booking = product.booking_now(seconds=300)
            family = _family(product, await product.family_token(booking), seed=2)
            await family.join()
            env = {
                k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "protocol.prison",
                *_laptop_argv(
                    product,
                    booking,
                    "--file",
                    str(clip),
                    "--loop",
                    "--duration",
                    "90",
                    "--turn-ca",
                    str(running.ca),
                    "--media-address",
                    "127.0.0.1",
                ),
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                try:
                    await family.wait_frames("video0", 30, timeout=60)
                    await asyncio.sleep(2)  # the laptop receives a while too
                finally:
                    if proc.returncode is None:
                        proc.terminate()  # it leaves cleanly on SIGTERM
                    out, _ = await asyncio.wait_for(proc.communicate(), 30)
            finally:
                if proc.returncode is None:
                    proc.kill()
                await family.close()
            text = out.decode()
            assert proc.returncode == 0, text
            assert "[call] live" in text and "received: " in text, text
            assert "video0" in text.split("received: ")[1], text
        finally:
            await product.server.close()
