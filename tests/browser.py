"""Headless Chromium (Debian's, no browser download) driven by Playwright, on loopback only."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


SCREENSHOTS_ENV = "SCREENSHOTS_DIR"
"""Where the browser tests write their screenshots: ``SCREENSHOTS_DIR=docs/screenshots``
refreshes the committed ones; unset, they go to the test's own temporary folder, so a test
run never changes the working tree."""


def screenshots_dir(tmp_path: Path) -> Path:
    """The folder for a test's screenshots (:data:`SCREENSHOTS_ENV`, else under ``tmp_path``)."""
    shots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def require_chromium() -> None:
    if not shutil.which("chromium") and not shutil.which("/usr/bin/chromium"):
        pytest.fail("Debian's chromium is required (apt-get install chromium; .ci/run does it)")


@contextlib.asynccontextmanager
async def chromium(extra_flags: list[str] | None = None) -> AsyncIterator:
    from playwright.async_api import async_playwright

    require_chromium()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS + (extra_flags or []),
            viewport={"width": 1024, "height": 720},
            bypass_csp=True,  # lets the test evaluate scripts; the pages keep their CSP
        )
        try:
            yield context
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


async def wait_decoding_video(page, frames: int = 30, timeout_ms: int = 30000) -> None:
    """Wait until the page's call (``window.__call``) has decoded more than ``frames`` video
    frames: what the person in front of it sees, not just packets arriving."""
    await page.wait_for_function(
        """async (frames) => {
            const s = await window.__call.framesDecoded();
            return Object.entries(s).some(([k, v]) => k.startsWith('video') && v > frames);
        }""",
        arg=frames,
        timeout=timeout_ms,
        polling=500,
    )


def trust_certificate_flag(cert: Path) -> str:
    """Chromium's flag that accepts exactly this certificate's key (SHA-256 of its
    SubjectPublicKeyInfo) despite an unknown issuer: for ``turns:`` to a test coturn. Debian's
    ``certutil`` (libnss3-tools), which could put a test CA into the profile's NSS database,
    is not on this machine. Chromium honours the flag only with a ``--user-data-dir``, which
    :func:`chromium` always gives it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = base64.b64encode(hashlib.sha256(der).digest()).decode()
    return f"--ignore-certificate-errors-spki-list={digest}"
