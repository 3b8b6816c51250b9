"""The download path against a local HTTP server on 127.0.0.1 serving generated files.

Nothing here touches the internet: every URL points at an ephemeral port on the loopback address.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from smoothlab.datasets import DataFile, DownloadError, download_file, load_dataset
from smoothlab.datasets import registry as registry_module
from smoothlab.datasets.registry import CIFAR10N_FILE

CONTENT = b"A1\ttarget\n" + b"".join(f"{i}\t{i % 2}\n".encode() for i in range(3000))
BLOB = gzip.compress(CONTENT, mtime=0)


class Server:
    """Routes: path -> (status, body, declared Content-Length)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, int]] = {}
        self.requests: list[str] = []
        routes, requests = self.routes, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                status, body, length = routes.get(self.path, (404, b"not here", 8))
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)  # then the connection closes (HTTP/1.0)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, body: bytes, *, length: int | None = None, status: int = 200) -> str:
        self.routes[path] = (status, body, len(body) if length is None else length)
        return self.url + path


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SMOOTHLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("smoothlab.datasets.paths.SYSTEM_DATA_DIR", tmp_path / "system")


def data_file(*urls: str, checksum: str | None = None) -> DataFile:
    checksum = checksum or "md5:" + hashlib.md5(CONTENT).hexdigest()
    return DataFile("t.tsv.gz", ("t",), checksum, gunzip=True, urls=urls)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_verifies_and_writes(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.serve("/t.tsv.gz", BLOB)
    path = download_file(data_file(url), tmp_path / "data")
    assert path == tmp_path / "data" / "t.tsv.gz" and path.read_bytes() == BLOB
    assert leftovers(tmp_path / "data") == ["t.tsv.gz"]
    assert "t.tsv.gz: 100%" in capsys.readouterr().err


def test_checksum_of_the_raw_bytes(server: Server, tmp_path: Path) -> None:
    url = server.serve("/raw.bin", b"abc")
    file = DataFile("raw.bin", ("r",), "sha256:" + hashlib.sha256(b"abc").hexdigest(), urls=(url,))
    assert download_file(file, tmp_path).read_bytes() == b"abc"


def test_wrong_checksum_leaves_nothing(server: Server, tmp_path: Path) -> None:
    url = server.serve("/t.tsv.gz", BLOB)
    file = data_file(url, checksum="md5:" + "0" * 32)
    folder = tmp_path / "new" / "deeper"
    with pytest.raises(
        DownloadError,
        match=r"checksum mismatch: .* must be a file whose decompressed content has md5 0+, got [0-9a-f]{32}",
    ):
        download_file(file, folder)
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "new").exists()  # the folders it created are gone too


def test_truncated_transfer_leaves_nothing(server: Server, tmp_path: Path) -> None:
    url = server.serve("/t.tsv.gz", BLOB[:100], length=len(BLOB))
    with pytest.raises(DownloadError, match=f"truncated transfer, got 100 of {len(BLOB)} bytes"):
        download_file(data_file(url), tmp_path / "data")
    assert leftovers(tmp_path / "data") == []


def test_http_error_leaves_nothing(server: Server, tmp_path: Path) -> None:
    url = server.url + "/missing.gz"
    with pytest.raises(
        DownloadError,
        match=r"could not download t\.tsv\.gz \(no partial file was kept\):\n  .*/missing\.gz: HTTP 404",
    ):
        download_file(data_file(url), tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_connection_refused(tmp_path: Path) -> None:
    srv = Server()  # bound but never serving, then closed: nothing listens on its port
    srv.httpd.server_close()
    with pytest.raises(DownloadError, match="could not download"):
        download_file(data_file(srv.url + "/t.tsv.gz"), tmp_path / "data", timeout=5)


def test_a_failed_download_keeps_an_existing_file(server: Server, tmp_path: Path) -> None:
    (tmp_path / "t.tsv.gz").write_bytes(b"old")
    url = server.serve("/t.tsv.gz", BLOB[:100], length=len(BLOB))
    with pytest.raises(DownloadError):
        download_file(data_file(url), tmp_path)
    assert leftovers(tmp_path) == ["t.tsv.gz"] and (tmp_path / "t.tsv.gz").read_bytes() == b"old"


def test_falls_back_to_the_next_mirror(server: Server, tmp_path: Path) -> None:
    bad = server.serve("/a/t.tsv.gz", b"garbage")
    good = server.serve("/b/t.tsv.gz", BLOB)
    assert download_file(data_file(bad, good), tmp_path).read_bytes() == BLOB
    assert server.requests == ["/a/t.tsv.gz", "/b/t.tsv.gz"]


def test_cifar_n_has_no_download_and_says_why(tmp_path: Path) -> None:
    with pytest.raises(
        DownloadError, match=r"CIFAR-10_human\.npz has no download URL.*never unpickles"
    ):
        download_file(CIFAR10N_FILE, tmp_path)
    assert leftovers(tmp_path) == []


def test_load_dataset_downloads_once_into_root(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: a registry row whose URL is the local server, fetched into `root` once."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 20)).round(3), np.arange(30) % 2
    header = "\t".join([*(f"A{i}" for i in range(1, 21)), "target"])
    rows = ["\t".join([*map(str, r), str(t)]) for r, t in zip(x, y, strict=True)]
    content = ("\n".join([header, *rows]) + "\n").encode()
    url = server.serve("/twonorm.tsv.gz", gzip.compress(content))
    info = registry_module.DATASETS["twonorm"]
    file = dataclasses.replace(
        info.files[0], urls=(url,), checksum="sha256:" + hashlib.sha256(content).hexdigest()
    )
    monkeypatch.setitem(
        registry_module.DATASETS, "twonorm", dataclasses.replace(info, files=(file,))
    )
    first = load_dataset("twonorm", root=tmp_path, download=True)
    second = load_dataset("twonorm", root=tmp_path, download=True)
    assert server.requests == ["/twonorm.tsv.gz"]
    assert (tmp_path / "twonorm" / "twonorm.tsv.gz").is_file()
    assert first.x_train.shape == second.x_train.shape == (20, 20)


def test_download_goes_to_the_env_folder_then_the_cache(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.serve("/t.tsv.gz", BLOB)
    info = dataclasses.replace(registry_module.DATASETS["twonorm"], name="t")
    file = data_file(url)
    monkeypatch.setenv("SMOOTHLAB_DATA", str(tmp_path / "env"))
    assert registry_module._resolve(info, file, None, True) == tmp_path / "env/t/t.tsv.gz"
    monkeypatch.delenv("SMOOTHLAB_DATA")
    assert (
        registry_module._resolve(info, file, None, True) == tmp_path / "cache/smoothlab/t/t.tsv.gz"
    )
