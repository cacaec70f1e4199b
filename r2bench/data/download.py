"""Resumable, checksummed downloads into the cache (stdlib only).

A file is fetched into ``<name>.part`` with HTTP ``Range`` requests, so an
interrupted download resumes where it stopped (also across processes). Only when
the byte count matches the server's total is it renamed to ``<name>`` and its
size and sha256 written beside it in ``<name>.sha256.json``. A ``.part`` file is
never read as data; a final file whose size no longer matches its record is
refused as corrupt.

Failures say what happened. A host that cannot be reached at all (its name does
not resolve, the connection is refused, the network is unreachable, the connection
times out, TLS fails) raises :class:`HostUnreachable` at once: retrying would only
repeat the same error. A transfer that breaks off is retried, resuming from the
bytes already kept, and :class:`DownloadIncomplete` says how many bytes are kept
(and where) when it gives up. A ``.part`` file is only created once a byte arrives.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from r2bench.atomic import sha256_file, write_json
from r2bench.errors import DataError
from r2bench.progress import bar

log = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "r2bench-downloader"


class DownloadError(DataError):
    """A download failed; ``url`` names what was requested."""

    def __init__(self, message: str, url: str):
        super().__init__(message)
        self.url = url


class HostUnreachable(DownloadError):
    """Nothing could be fetched: the host is not reachable from here."""


class DownloadIncomplete(DownloadError):
    """The transfer kept breaking off; a ``.part`` may hold what arrived."""


def _unreachable_reason(exc: urllib.error.URLError) -> str | None:
    """Why a connection could not be opened, or None when it is not that kind of error."""
    r = exc.reason
    if isinstance(r, socket.gaierror):
        return f"the host name does not resolve ({r.strerror or r}): no network, no DNS, or a wrong host name"
    if isinstance(r, ConnectionRefusedError):
        return "the connection was refused: nothing listens at that address and port"
    if isinstance(r, (TimeoutError, socket.timeout)):
        return "the connection timed out"
    if isinstance(r, ssl.SSLError):
        return f"the TLS handshake failed ({r})"
    if isinstance(r, OSError):
        return f"the connection could not be opened ({r.strerror or r})"
    return None


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
        f = None
        try:
            with bar(total=total, initial=offset, desc=part.name[:-5], unit="B", unit_scale=True) as b:
                while block := resp.read(CHUNK):
                    if f is None:  # the part exists only once a byte has arrived
                        f = open(part, "ab" if offset else "wb")
                    f.write(block)
                    b.update(len(block))
        finally:
            if f is not None:
                f.close()
    return total


def _kept(part: Path) -> int:
    return part.stat().st_size if part.exists() else 0


def download(url: str, dest: str | Path, retries: int = 5, timeout: float = 60.0, backoff: float = 1.0) -> dict[str, Any]:
    """Fetch ``url`` to ``dest`` (resuming a ``.part``) and return {url, bytes, sha256}.

    An existing complete file (with its record) is reused without network access.
    Raises :class:`HostUnreachable` (no retry), :class:`DownloadIncomplete` (after
    ``retries`` resumed attempts) or :class:`DownloadError` (an HTTP error status).
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
    host = urllib.parse.urlsplit(url).netloc or url
    last = ""
    for attempt in range(retries + 1):
        try:
            total = _fetch_once(url, part, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 403, 401, 410):
                raise DownloadError(
                    f"download failed: {url} answered {exc.code} {exc.reason}; check --base-url (or R2BENCH_AMAZON_BASE_URL)",
                    url) from None
            last = f"the server answered {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:  # the connection could not be opened
            why = _unreachable_reason(exc)
            if why is None:
                last = f"{exc.reason}"
            else:
                kept = _kept(part)
                note = f"; the {kept:,} bytes fetched earlier stay in {part}" if kept else ""
                raise HostUnreachable(f"cannot reach {host} to download {url}: {why}. Nothing was downloaded{note}.", url) from None
        except (http.client.HTTPException, OSError, TimeoutError) as exc:  # broke off during the transfer
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            size = _kept(part)
            if total is None or size == total:
                break
            if size > total:  # more bytes than the server says: the part is corrupt, start over
                part.unlink()
                last = f"the server sent more than the {total:,} bytes it announced; starting over"
            else:
                last = f"the connection closed at {size:,} of {total:,} bytes"
        if attempt < retries:
            kept = _kept(part)
            how = f"resuming from {kept:,} bytes" if kept else "retrying"
            log.warning("download of %s interrupted (%s); %s (attempt %d of %d)", url, last, how, attempt + 2, retries + 1)
            time.sleep(backoff * attempt)
    else:
        kept = _kept(part)
        where = (f"{kept:,} bytes are kept in {part}: run the same command again to resume from there"
                 if kept else "nothing was kept to resume from: run the same command again to retry")
        raise DownloadIncomplete(f"download of {url} did not complete after {retries + 1} attempts ({last}); {where}", url)
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
