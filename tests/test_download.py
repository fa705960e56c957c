"""``download`` against a local HTTP server on 127.0.0.1: a full fetch, a server that drops the connection halfway
and a resume with HTTP Range, a damaged zip, and no server at all."""
from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from helpers import download as dl
from tests.test_mindbigdata import good_file, run_cli


def make_zip(tmp_path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("EP1.01.txt", good_file(tmp_path, n=60).read_bytes())
    return buf.getvalue()


class Server:
    """Serves ``files`` (path -> bytes). ``drop_after``: send the full Content-Length, then only that many bytes and
    close (a dropped connection). ``honour_range``: answer ``Range: bytes=N-`` with 206. Records Range headers."""

    def __init__(self, files, drop_after=None, honour_range=True):
        self.files, self.drop_after, self.honour_range, self.ranges = files, drop_after, honour_range, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the name http.server calls
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng and outer.honour_range else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.drop_after is not None:
                    self.wfile.write(body[:outer.drop_after])
                    self.wfile.flush()
                    self.connection.close()  # the rest never comes
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload(tmp_path):
    return make_zip(tmp_path)


def test_fetches_checks_and_records_the_checksum(tmp_path, payload):
    srv = Server({"/MindBigData-EP-v1.0.zip": payload})
    try:
        path, digest = dl.download(srv.url + "/MindBigData-EP-v1.0.zip", tmp_path / "out", progress=False)
    finally:
        srv.close()
    assert path.read_bytes() == payload and digest == hashlib.sha256(payload).hexdigest()
    assert (tmp_path / "out" / "MindBigData-EP-v1.0.zip.sha256").read_text().startswith(digest)
    assert not (tmp_path / "out" / "MindBigData-EP-v1.0.zip.part").exists()


def test_a_dropped_connection_resumes_with_range(tmp_path, payload):
    url_path = "/MindBigData-EP-v1.0.zip"
    half = len(payload) // 2
    srv = Server({url_path: payload}, drop_after=half)
    try:
        with pytest.raises(dl.DownloadError, match="run the same command again to resume"):
            dl.download(srv.url + url_path, tmp_path, progress=False)
    finally:
        srv.close()
    part = tmp_path / "MindBigData-EP-v1.0.zip.part"
    assert 0 < part.stat().st_size <= half and not (tmp_path / "MindBigData-EP-v1.0.zip").exists()
    kept = part.stat().st_size
    srv = Server({url_path: payload})
    try:
        path, _ = dl.download(srv.url + url_path, tmp_path, progress=False)
    finally:
        srv.close()
    assert srv.ranges == [f"bytes={kept}-"] and path.read_bytes() == payload


def test_a_server_that_ignores_range_restarts_cleanly(tmp_path, payload):
    (tmp_path / "f.zip.part").write_bytes(b"garbage from an older attempt")
    srv = Server({"/f.zip": payload}, honour_range=False)
    try:
        path, _ = dl.download(srv.url + "/f.zip", tmp_path, progress=False)
    finally:
        srv.close()
    assert path.read_bytes() == payload


def test_a_damaged_zip_is_refused_and_removed(tmp_path, payload):
    bad = bytearray(payload)
    bad[len(bad) // 3] ^= 0xFF
    srv = Server({"/f.zip": bytes(bad)})
    try:
        with pytest.raises(dl.DownloadError, match="damaged and was removed"):
            dl.download(srv.url + "/f.zip", tmp_path, progress=False)
    finally:
        srv.close()
    assert not (tmp_path / "f.zip").exists() and not (tmp_path / "f.zip.part").exists()


def test_no_network_names_the_url_and_the_way_by_hand(tmp_path):
    srv = Server({})
    url = srv.url + "/MindBigData-EP-v1.0.zip"
    srv.close()  # nothing listens there any more
    r = run_cli("download", "--url", url, "--out", str(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert url in r.stderr and "in a browser" in r.stderr


def test_cli_download_prints_the_checksum(tmp_path, payload):
    srv = Server({"/x.zip": payload})
    try:
        r = run_cli("download", "--url", srv.url + "/x.zip", "--out", str(tmp_path))
    finally:
        srv.close()
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(payload).hexdigest() in r.stdout and "CRC" in r.stdout
