"""Build ``protocol/_rtpfast`` (the relay's per-packet work in C) next to its source.

``make`` runs this (``make run``, ``make test``, ``make bench``); a deployment runs it once
after installing the requirements: ``.venv/bin/python -m protocol.rtpfast_build``. It needs
a C compiler and the Python headers (Debian: gcc, python3-dev; pyenv builds carry their
headers). libsrtp is not linked: pylibsrtp's binding supplies it at run time.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

SOURCE = Path(__file__).with_name("_rtpfast.c")
FLAGS = (
    "-O2",
    "-fPIC",
    "-shared",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-ffp-contract=off",
)
"""-ffp-contract=off: no fused multiply-adds, so the estimator's doubles round as Python's do."""


def target() -> Path:
    """Where the built module goes: beside its source, with this interpreter's suffix."""
    return SOURCE.with_name("_rtpfast" + sysconfig.get_config_var("EXT_SUFFIX"))


def build() -> Path:
    out = target()
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")[:1]
    include = sysconfig.get_paths()["include"]
    tmp = out.with_suffix(".tmp")
    command = [*compiler, *FLAGS, f"-I{include}", str(SOURCE), "-o", str(tmp), "-lm"]
    subprocess.run(command, check=True)
    tmp.replace(out)  # atomic: a running relay keeps the file it loaded
    return out


if __name__ == "__main__":
    try:
        print(build())
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(
            f"protocol/_rtpfast could not be built ({exc}): it needs a C compiler and the Python headers"
        )
