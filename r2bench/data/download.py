"""Resumable, checksummed downloads into the cache (stdlib only).

A file is fetched into ``<name>.part`` with HTTP ``Range`` requests, so an
interrupted download resumes where it stopped (also across processes). Only when
the byte count matches the server's total is it renamed to ``<name>`` and its
size and sha256 written beside it in ``<name>.sha256.json``. A ``.part`` file is
never read as data; a final file whose size no longer matches its record is
refused as corrupt.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from r2bench.atomic import sha256_file, write_json
from r2bench.errors import DataError
from r2bench.progress import bar

log = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "r2bench-downloader"


def record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256.json")


def _total_from(resp, offset: int) -> int | None:
    cr = resp.headers.get("Content-Range")
    if cr:
        m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", cr)
        if m and m.group(3) != "*":
            return int(m.group(3))
    cl = resp.headers.get("Content-Length")
    if cl is not None:
        return int(cl) + (offset if resp.status == 206 else 0)
    return None


def _fetch_once(url: str, part: Path, timeout: float) -> int | None:
    """One request continuing ``part``; returns the server's total size (or None)."""
    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to fetch: the part is complete
            m = re.match(r"bytes\s+\*/(\d+)", exc.headers.get("Content-Range", "") or "")
            return int(m.group(1)) if m else offset
        raise
    with resp:
        if offset and resp.status != 206:  # the server ignored Range: start over
            log.info("%s: server does not resume (status %s); restarting", url, resp.status)
            offset = 0
        total = _total_from(resp, offset)
        mode = "ab" if offset else "wb"
        with open(part, mode) as f, bar(total=total, initial=offset, desc=part.name[:-5], unit="B", unit_scale=True) as b:
            while block := resp.read(CHUNK):
                f.write(block)
                b.update(len(block))
    return total


def download(url: str, dest: str | Path, retries: int = 5, timeout: float = 60.0, backoff: float = 1.0) -> dict[str, Any]:
    """Fetch ``url`` to ``dest`` (resuming a ``.part``) and return {url, bytes, sha256}.

    An existing complete file (with its record) is reused without network access.
    """
    dest = Path(dest)
    rec = record_path(dest)
    if dest.is_file() and rec.is_file():
        return verify_download(dest)
    if dest.is_file():  # copied in by hand, no record: accept and record it
        info = {"url": url, "bytes": dest.stat().st_size, "sha256": sha256_file(dest)}
        write_json(rec, info)
        return info
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_exc: Exception | None = None
    for attempt in range(retries + 1):
        try:
            total = _fetch_once(url, part, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 403, 401, 410):
                raise DataError(f"download failed: {url} answered {exc.code} {exc.reason}; check --base-url (or R2BENCH_AMAZON_BASE_URL)") from None
            last_exc = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
            last_exc = exc
        else:
            size = part.stat().st_size if part.exists() else 0
            if total is None or size == total:
                break
            if size > total:  # more bytes than the server says: the part is corrupt, start over
                part.unlink()
            last_exc = OSError(f"connection closed at {size} of {total} bytes")
        log.info("download of %s interrupted (%s); resuming (attempt %d)", url, last_exc, attempt + 1)
        time.sleep(backoff * attempt)
    else:
        raise DataError(
            f"download of {url} did not complete after {retries + 1} attempts ({last_exc}); "
            f"run the same command again to resume from {part}"
        )
    info = {"url": url, "bytes": part.stat().st_size, "sha256": sha256_file(part)}
    part.replace(dest)
    write_json(rec, info)
    return info


def verify_download(dest: Path) -> dict[str, Any]:
    """Check a downloaded file against its size record (cheap); raise if it changed."""
    info = json.loads(record_path(dest).read_text())
    size = dest.stat().st_size
    if size != info["bytes"]:
        raise DataError(
            f"{dest}: {size} bytes but {info['bytes']} were downloaded; the file is corrupt: "
            f"delete it (and {record_path(dest).name}) and run prepare again"
        )
    return info
