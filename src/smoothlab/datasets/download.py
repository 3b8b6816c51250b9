"""Fetch a file from its canonical URL: progress on stderr, checksum, atomic write, no leftovers.

The file is streamed into a hidden temporary file in the target folder, its checksum verified,
flushed and fsynced, then renamed over the target in one step, so a reader never sees half a file.
Any failure (HTTP error, a transfer shorter than its ``Content-Length``, a wrong checksum) removes
the temporary file and raises :class:`DownloadError` naming the URL and the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from .._checks import fail
from ._core import DataFile
from .formats import open_maybe_gzip

__all__ = ["DownloadError", "download_file", "file_checksum", "verify_file"]

_CHUNK = 1 << 20
_ALGORITHMS = ("md5", "sha256")


class DownloadError(OSError):
    """A download failed; no partial file was left behind."""


def _parse_checksum(checksum: str) -> tuple[str, str]:
    algorithm, _, digest = checksum.partition(":")
    if algorithm not in _ALGORITHMS or not digest:
        raise fail("checksum", "of the form 'md5:<hex>' or 'sha256:<hex>'", checksum)
    return algorithm, digest.lower()


def file_checksum(path: str | os.PathLike[str], algorithm: str, *, gunzip: bool = False) -> str:
    """The hex digest of a file's bytes; with ``gunzip=True`` of its content after decompression
    (a file that is not gzip is taken as already decompressed).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> file_checksum(path, "md5")
    '900150983cd24fb0d6963f7d28e17f72'
    """
    digest = hashlib.new(algorithm)
    with open_maybe_gzip(path) if gunzip else open(path, "rb") as stream:
        while block := stream.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str | os.PathLike[str], file: DataFile) -> None:
    """Raise ``ValueError`` unless ``path`` has the checksum recorded in ``file``.

    A truncated gzip file fails the same way.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> verify_file(path, DataFile("a.txt", ("a",), "md5:900150983cd24fb0d6963f7d28e17f72"))
    >>> verify_file(path, DataFile("a.txt", ("a",), "md5:" + "0" * 32))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: `...a.txt` must be a file whose content has md5 000..., got 900150983cd24fb0d6...
    """
    algorithm, expected = _parse_checksum(file.checksum)
    try:
        got = file_checksum(path, algorithm, gunzip=file.gunzip)
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        got = f"an unreadable file ({error})"
    if got != expected:
        what = "decompressed content" if file.gunzip else "content"
        raise fail(str(path), f"a file whose {what} has {algorithm} {expected}", f"!{got}")


def _progress(name: str, done: int, total: int | None) -> None:
    if total:
        text = f"\r{name}: {100 * done // total:3d}% ({done / 1e6:.1f} of {total / 1e6:.1f} MB)"
    else:
        text = f"\r{name}: {done / 1e6:.1f} MB"
    sys.stderr.write(text)
    sys.stderr.flush()


def _stream(url: str, out: IO[bytes], name: str, timeout: float) -> None:
    """Copy ``url`` into ``out``; raise DownloadError on HTTP errors or a short transfer."""
    done, total = 0, None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            while block := response.read(_CHUNK):
                out.write(block)
                done += len(block)
                _progress(name, done, total)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except http.client.IncompleteRead as error:
        done += len(error.partial)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise DownloadError(f"{url}: {error}") from error
    finally:
        sys.stderr.write("\n")
    if total is not None and done != total:
        raise DownloadError(f"{url}: truncated transfer, got {done} of {total} bytes")


def _fetch_one(url: str, target: Path, file: DataFile, timeout: float) -> None:
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    try:
        with os.fdopen(handle, "wb") as out:
            _stream(url, out, target.name, timeout)
            out.flush()
            os.fsync(out.fileno())
        try:
            verify_file(temporary, file)
        except ValueError as error:
            raise DownloadError(f"{url}: checksum mismatch: {error}") from error
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def download_file(file: DataFile, folder: str | os.PathLike[str], *, timeout: float = 60.0) -> Path:
    """Download ``file`` into ``folder`` (created if needed) and return its path.

    Each of ``file.urls`` is tried in order until one gives a complete file with the right
    checksum (``md5``/``sha256`` of the bytes, or of the decompressed bytes when ``file.gunzip``).

    Args:
        file: the registry's description of the file (name, checksum, URLs).
        folder: the target folder; the file lands at ``folder / file.filename``.
        timeout: seconds to wait for the server on each network operation.

    Raises:
        DownloadError: every URL failed (the message lists each reason); nothing is left behind.

    >>> download_file(DataFile("x.npz", ("x",), "md5:" + "0" * 32, how_to_get="ask"), "/tmp/x")
    Traceback (most recent call last):
    ...
    smoothlab.datasets.download.DownloadError: x.npz has no download URL. ask
    """
    if not file.urls:
        raise DownloadError(f"{file.filename} has no download URL. {file.how_to_get}")
    target = Path(folder) / file.filename
    created = _make_folders(target.parent)
    reasons = []
    for url in file.urls:
        try:
            _fetch_one(url, target, file, timeout)
        except DownloadError as error:
            reasons.append(str(error))
        else:
            return target
    for directory in reversed(created):  # leave no empty folders behind either
        with contextlib.suppress(OSError):
            directory.rmdir()
    raise DownloadError(
        f"could not download {file.filename} (no partial file was kept):\n  " + "\n  ".join(reasons)
    )
