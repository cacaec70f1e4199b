"""The download path against a real HTTP server on 127.0.0.1 (Range, interruption, resume)."""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

import pytest

from r2bench.data.download import download, record_path
from r2bench.data.prepare import prepare
from r2bench.errors import DataError
from tests.data.amazon_fixtures import write_category


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    log: list
    cut_first: dict  # path -> [bytes to send before dropping the connection, how many times]

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        rel = self.path.lstrip("/")
        f = self.root / rel
        rng = self.headers.get("Range")
        self.log.append((rel, rng))
        if not f.is_file():
            self.send_error(404)
            return
        data = f.read_bytes()
        start = 0
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.cut_first.get(rel)
        if cut and cut[1] > 0:
            cut[1] -= 1
            self.wfile.write(body[: cut[0]])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    handler = type("H", (_Handler,), {"root": root, "log": [], "cut_first": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, handler
    httpd.shutdown()
    httpd.server_close()


def _mirror(root: Path, category="Video_Games", **kw):
    raw = root / "_raw"
    rpath, mpath = write_category(raw, category, **kw)
    (root / "review_categories").mkdir(exist_ok=True)
    (root / "meta_categories").mkdir(exist_ok=True)
    rpath.rename(root / "review_categories" / rpath.name)
    mpath.rename(root / "meta_categories" / mpath.name)
    return root / "review_categories" / rpath.name, root / "meta_categories" / mpath.name


def test_interrupted_download_resumes(server, tmp_path):
    base, root, handler = server
    src = root / "blob.bin"
    src.write_bytes(bytes(range(256)) * 4000)
    handler.cut_first["blob.bin"] = [300_000, 1]
    dest = tmp_path / "out" / "blob.bin"
    info = download(f"{base}/blob.bin", dest, backoff=0)
    assert dest.read_bytes() == src.read_bytes()
    assert info["bytes"] == src.stat().st_size and len(info["sha256"]) == 64
    ranges = [r for p, r in handler.log if p == "blob.bin"]
    assert ranges[0] is None and ranges[1] == "bytes=300000-"
    assert not dest.with_name("blob.bin.part").exists()
    assert record_path(dest).is_file()


def test_existing_part_file_is_continued(server, tmp_path):
    base, root, handler = server
    payload = b"abcdefghij" * 10_000
    (root / "f.gz").write_bytes(payload)
    dest = tmp_path / "f.gz"
    dest.with_name("f.gz.part").write_bytes(payload[:12_345])  # left by an earlier, killed run
    download(f"{base}/f.gz", dest, backoff=0)
    assert dest.read_bytes() == payload
    assert handler.log == [("f.gz", "bytes=12345-")]


def test_gave_up_download_leaves_only_a_part(server, tmp_path):
    base, root, handler = server
    (root / "g.gz").write_bytes(b"x" * 50_000)
    handler.cut_first["g.gz"] = [0, 99]  # every attempt is cut before any byte
    dest = tmp_path / "g.gz"
    with pytest.raises(DataError, match="did not complete after 3 attempts.*resume"):
        download(f"{base}/g.gz", dest, retries=2, backoff=0)
    assert not dest.exists() and not record_path(dest).exists()
    handler.cut_first["g.gz"] = [20_000, 1]
    with pytest.raises(DataError, match="did not complete"):
        download(f"{base}/g.gz", dest, retries=0, backoff=0)
    assert dest.with_name("g.gz.part").stat().st_size == 20_000 and not dest.exists()
    download(f"{base}/g.gz", dest, backoff=0)  # the next run resumes and completes
    assert dest.read_bytes() == b"x" * 50_000
    assert handler.log[-1] == ("g.gz", "bytes=20000-")


def test_prepare_downloads_from_mirror_then_reuses_cache(server, _isolated_home, monkeypatch):
    base, root, handler = server
    _mirror(root)
    handler.cut_first["review_categories/Video_Games.jsonl.gz"] = [1000, 1]
    monkeypatch.setenv("R2BENCH_AMAZON_BASE_URL", base)
    b = prepare("amazon-video-games")
    raw = _isolated_home / "raw" / "amazon-video-games"
    assert sorted(p.name for p in raw.iterdir()) == [
        "Video_Games.jsonl.gz", "Video_Games.jsonl.gz.sha256.json",
        "meta_Video_Games.jsonl.gz", "meta_Video_Games.jsonl.gz.sha256.json",
    ]
    assert b.manifest["source"]["origin"] == "download"
    assert b.manifest["source"]["urls"][0] == f"{base}/review_categories/Video_Games.jsonl.gz"
    assert ("review_categories/Video_Games.jsonl.gz", "bytes=1000-") in handler.log
    # same bytes as a --raw-dir prepare of the same files
    direct = prepare("amazon-video-games", raw_dir=raw)
    assert direct.fingerprint == b.fingerprint
    # cached: no network on the next prepare
    n = len(handler.log)
    again = prepare("amazon-video-games", base_url="http://127.0.0.1:9/unused")
    assert again.fingerprint == b.fingerprint and len(handler.log) == n


def test_corrupt_cached_download_is_refused(server, _isolated_home):
    base, root, _ = server
    _mirror(root)
    prepare("amazon-video-games", base_url=base)
    f = _isolated_home / "raw" / "amazon-video-games" / "Video_Games.jsonl.gz"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DataError, match="corrupt"):
        prepare("amazon-video-games", base_url=base)


def test_404_names_the_url_and_base_url_option(server):
    base, _, _ = server
    with pytest.raises(DataError, match=r"review_categories/Video_Games\.jsonl\.gz answered 404.*--base-url"):
        prepare("amazon-video-games", base_url=base)


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


@pytest.mark.parametrize(
    "base, why",
    [
        ("http://r2bench-no-such-host.invalid", r"r2bench-no-such-host\.invalid.*the host name does not resolve"),
        (None, r"127\.0\.0\.1:\d+.*the connection was refused"),
    ],
)
def test_unreachable_host_fails_at_once_with_the_way_forward(base, why, _isolated_home, caplog):
    base = base or f"http://127.0.0.1:{_closed_port()}"
    with caplog.at_level("INFO"), pytest.raises(DataError) as info:
        prepare("amazon-video-games", base_url=base)
    msg = str(info.value)
    assert re.search(f"cannot reach {why}", msg), msg
    assert "Nothing was downloaded" in msg and ".part" not in msg
    assert "--raw-dir FOLDER" in msg and "--base-url URL" in msg and "R2BENCH_AMAZON_BASE_URL" in msg
    assert not [r for r in caplog.records if "interrupted" in r.getMessage()]  # no retries
    raw = _isolated_home / "raw" / "amazon-video-games"
    assert not raw.exists() or not list(raw.iterdir())


def test_interrupted_transfer_says_what_is_kept(server, tmp_path, caplog):
    base, root, handler = server
    (root / "h.gz").write_bytes(b"y" * 40_000)
    dest = tmp_path / "h.gz"
    handler.cut_first["h.gz"] = [0, 99]  # the connection breaks before any byte, every time
    with caplog.at_level("INFO"), pytest.raises(DataError, match="nothing was kept to resume from") as info:
        download(f"{base}/h.gz", dest, retries=2, backoff=0)
    assert ".part" not in str(info.value) and not dest.with_name("h.gz.part").exists()
    retried = [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()]
    assert len(retried) == 2 and "retrying (attempt 2 of 3)" in retried[0]
    handler.cut_first["h.gz"] = [15_000, 99]
    with pytest.raises(DataError, match=r"did not complete after 1 attempts.*15,000 bytes are kept in .*h\.gz\.part"):
        download(f"{base}/h.gz", dest, retries=0, backoff=0)
    caplog.clear()
    handler.cut_first["h.gz"] = [10_000, 1]
    with caplog.at_level("INFO"):
        assert download(f"{base}/h.gz", dest, backoff=0)["bytes"] == 40_000
    assert any("resuming from 25,000 bytes" in r.getMessage() for r in caplog.records)
