"""What a durable recording chunk costs on a storage folder (docs/deploy.md).

    python -m bench.storage_fsync [--dir /srv/visitrelay/shared] [--chunks 40] [--kb 520]

Seals chunks the size of one ``recording_chunk_s`` of a call (2 s of two legs at about 1 Mbit/s
plus Opus: ~520 kB) into the folder through the recordings storage, with and without fsync,
and prints the time per chunk. Run it on the shared mount before going live: the writer
thread must seal each chunk well within ``recording_chunk_s``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from relay.records.sealed import SealedWriter
from relay.records.storage import FolderStorage


def measure(folder: Path, chunks: int, size: int, fsync: bool) -> list[float]:
    storage = FolderStorage(folder)
    key = f"bench/fsync-{secrets.token_hex(4)}.enc"
    writer = SealedWriter(storage.create(key), os.urandom(32), fsync=fsync)
    data = os.urandom(size)
    times = []
    try:
        for _ in range(chunks):
            started = time.perf_counter()
            writer.seal(data)
            times.append(time.perf_counter() - started)
    finally:
        writer.close()
        storage.delete(key)
    return sorted(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage_fsync")
    parser.add_argument(
        "--dir", type=Path, default=None, help="the storage folder (default: a temp folder here)"
    )
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--kb", type=int, default=520)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir or Path.cwd()) as folder:
        for fsync in (False, True):
            t = measure(Path(folder), args.chunks, args.kb * 1000, fsync)
            p95 = t[min(len(t) - 1, int(len(t) * 0.95))]
            print(
                f"fsync={'on ' if fsync else 'off'}  {args.kb} kB chunk: "
                f"p50 {statistics.median(t) * 1e3:.1f} ms  p95 {p95 * 1e3:.1f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
