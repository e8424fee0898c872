"""Getting a model set's files: resumable, verified downloads and zip unpacking."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from orgseg.errors import DataContractError, StorageError

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


def sha256_file(path: str | Path, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(
    url: str, target: Path, *, sha256: str | None = None, progress: Progress | None = None
) -> str:
    """Download ``url`` to ``target``, resuming a partial ``target.part``; verify
    ``sha256`` when given. Returns the file's sha256."""
    import http.client
    import urllib.error
    import urllib.request

    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        digest = sha256_file(target)
        if sha256 is None or digest == sha256:
            return digest
        target.unlink()
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if have and response.status != 206:
                have = 0  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with open(part, "ab" if have else "wb") as f:
                done = have
                while block := response.read(1 << 20):
                    f.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
            if total is not None and done < total:
                raise OSError(f"connection closed after {done} of {total} bytes")
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already whole
            pass
        else:
            raise StorageError(
                f"cannot download {url}: HTTP {exc.code} {exc.reason}; check the URL, or "
                "fetch it by hand and use `orgseg models import`"
            ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise StorageError(
            f"cannot download {url}: {exc}; the partial download is kept and the next "
            "fetch resumes it (offline nodes: fetch once where there is internet, or "
            "`orgseg models import` a copy)"
        ) from None
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256:
        part.unlink()
        raise StorageError(
            f"{url}: sha256 {digest} does not match the registry's {sha256}; the download "
            "was removed (fetch again, or update the registry entry if the publisher "
            "re-released it)"
        )
    part.rename(target)
    return digest


@contextmanager
def unpacked(path: Path) -> Iterator[Path]:
    """A folder holding ``path``'s content: the folder itself, or a zip extracted."""
    if path.is_dir():
        yield path
        return
    if not zipfile.is_zipfile(path):
        raise DataContractError(
            f"{path}: expected a folder or a .zip of nnU-Net result folders, got neither"
        )
    tmp = Path(tempfile.mkdtemp(prefix="orgseg-unzip-"))
    try:
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                target = (tmp / member).resolve()
                if not str(target).startswith(str(tmp.resolve())):
                    raise DataContractError(f"{path}: member {member!r} escapes the archive")
            z.extractall(tmp)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
