"""URLs to bytes and local paths, through fsspec: local paths, ``s3://``, ``memory://``.

Writes are atomic: data goes to a temporary name and is committed (renamed, or uploaded
in one PUT for object stores) only when complete, so a crash never leaves a half-written
output under the final name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orgseg.errors import MissingError, StorageError

if TYPE_CHECKING:
    import fsspec

log = logging.getLogger(__name__)

_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz")


def split_suffix(name: str) -> tuple[str, str]:
    """``("ct", ".nii.gz")`` for ``"ct.nii.gz"``; knows double suffixes.

    >>> split_suffix("a/b/ct.nii.gz"), split_suffix("x.mha"), split_suffix("dir")
    (('a/b/ct', '.nii.gz'), ('x', '.mha'), ('dir', ''))
    """
    lower = name.lower()
    for s in _DOUBLE_SUFFIXES:
        if lower.endswith(s):
            return name[: -len(s)], name[-len(s) :]
    stem, ext = os.path.splitext(name)
    return stem, ext


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and in-filesystem path for a URL (fsspec is imported on first
    use: a per-case process on local files never pays its import)."""
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise StorageError(
            f"cannot open {url!r}: {exc}. Use a local path, s3://bucket/key or memory://path"
        ) from None


def join_url(base: str, *parts: str) -> str:
    """Join path parts onto a URL or local path with '/'."""
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(fs.exists(path))


def remove(url: str) -> None:
    """Delete a file or folder at ``url`` if it exists (cleaning up after a failure)."""
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def list_files(url: str) -> list[str]:
    """Every file under the folder/prefix ``url``, as URLs, sorted."""
    fs, path = filesystem(url)
    if not fs.exists(path):
        raise MissingError(f"{url!r} does not exist; check the path or URL")
    base = url.rstrip("/")
    root = path.rstrip("/")
    return sorted(base + p[len(root) :] for p in fs.find(path))


def list_sizes(url: str) -> list[tuple[str, int]]:
    """Every file under the folder/prefix ``url`` as (URL, size in bytes), sorted, from
    the listing alone (one request per 1,000 keys on S3, no request per file)."""
    fs, path = filesystem(url)
    if not fs.exists(path):
        raise MissingError(f"{url!r} does not exist; check the path or URL")
    base = url.rstrip("/")
    root = path.rstrip("/")
    found = fs.find(path, detail=True)
    return sorted(
        (base + str(name)[len(root) :], int(info.get("size") or 0))
        for name, info in found.items()
        if info.get("type", "file") != "directory"
    )


def read_heads(urls: Sequence[str], n_bytes: int) -> dict[str, bytes | Exception]:
    """The first ``n_bytes`` of each file, many ranged reads in flight at once (fsspec's
    batched ``cat_ranges``: concurrent on object stores); a file that cannot be read maps
    to its exception. The URLs must share one filesystem."""
    if not urls:
        return {}
    fs, _ = filesystem(urls[0])
    paths = [filesystem(u)[1] for u in urls]
    out = fs.cat_ranges(paths, [0] * len(paths), [n_bytes] * len(paths), on_error="return")
    return dict(zip(urls, out, strict=True))


def read_many(urls: Sequence[str]) -> dict[str, bytes]:
    """The content of each file that exists (missing ones are left out), read
    concurrently on object stores (fsspec's batched ``cat``)."""
    if not urls:
        return {}
    fs, _ = filesystem(urls[0])
    by_path = {fs._strip_protocol(filesystem(u)[1]): u for u in urls}
    got = fs.cat(list(by_path), on_error="omit")  # a list: always a dict back
    return {by_path[p]: v for p, v in got.items() if p in by_path and isinstance(v, bytes)}


def names_in(url: str) -> set[str]:
    """The names directly inside folder/prefix ``url``: one listing, and an empty set
    (no error) when it does not exist yet, as for outputs a job has not written."""
    fs, path = filesystem(url)
    try:
        return {str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)}
    except FileNotFoundError:
        return set()


def list_entries(url: str) -> list[tuple[str, bool]]:
    """The names directly inside folder/prefix ``url`` with an is-folder flag, sorted."""
    fs, path = filesystem(url)
    if not fs.isdir(path):
        raise StorageError(f"{url!r} is not a folder; check the path or URL")
    root = path.rstrip("/")
    out = []
    for info in fs.ls(path, detail=True):
        name = str(info["name"]).rstrip("/")
        if name == root:
            continue
        out.append((name.rsplit("/", 1)[-1], info.get("type") == "directory"))
    return sorted(out)


def is_dir(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(fs.isdir(path))


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise MissingError(f"{url!r} does not exist; check the path or URL") from None
    except IsADirectoryError:
        raise StorageError(f"{url!r} is a folder, expected a file") from None


def read_head(url: str, n: int) -> bytes:
    """The first ``n`` bytes of a file (one ranged read on object stores)."""
    fs, path = filesystem(url)
    try:
        with fs.open(path, "rb", block_size=n) as fh:
            return fh.read(n)
    except FileNotFoundError:
        raise MissingError(f"{url!r} does not exist; check the path or URL") from None


def write_bytes(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` atomically."""
    with atomic_local_path(url) as tmp:
        Path(tmp).write_bytes(data)


@contextlib.contextmanager
def local_copy(url: str) -> Iterator[str]:
    """A local path holding ``url``'s content (the file itself when it is already local).

    Remote files and folders (a DICOM series under a prefix) are staged into a temporary
    folder that keeps their names, so readers still detect formats by extension.
    """
    if is_local(url):
        path = _local_path(url)
        if not os.path.exists(path):
            raise MissingError(f"{url!r} does not exist; check the path")
        yield path
        return
    fs, path = filesystem(url)
    if not fs.exists(path):
        raise MissingError(f"{url!r} does not exist; check the URL and credentials")
    tmpdir = tempfile.mkdtemp(prefix="orgseg-stage-")
    try:
        name = path.rstrip("/").rsplit("/", 1)[-1] or "data"
        target = os.path.join(tmpdir, name)
        if fs.isdir(path):
            os.makedirs(target)
            remotes = fs.find(path)
            dests = [os.path.join(target, r[len(path.rstrip("/")) + 1 :]) for r in remotes]
            for d in {os.path.dirname(d) for d in dests}:
                os.makedirs(d, exist_ok=True)
            # one batched call: object stores fetch the files (a series' slices)
            # concurrently, not one after another
            fs.get(remotes, dests)
        else:
            fs.get_file(path, target)
        log.debug("staged %s to %s", url, target)
        yield target
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@contextlib.contextmanager
def atomic_local_path(url: str) -> Iterator[str]:
    """Yield a local temporary path to write; commit it to ``url`` on success only.

    The temporary name keeps the suffix of ``url`` (writers pick the format from it).
    On an exception the temporary file is removed and nothing appears at ``url``.
    """
    _, suffix = split_suffix(url)
    if is_local(url):
        final = _local_path(url)
        parent = os.path.dirname(os.path.abspath(final))
        os.makedirs(parent, exist_ok=True)
        base = os.path.basename(final)
        tmp = os.path.join(parent, f".{base}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
        try:
            yield tmp
            if not os.path.exists(tmp):
                raise StorageError(f"nothing was written for {url!r}")
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    fs, path = filesystem(url)
    fd, tmp = tempfile.mkstemp(prefix="orgseg-out-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        # an object store PUT is atomic: readers see the old object or the whole new one
        try:
            parent = path.rsplit("/", 1)[0]
            if parent and not url.startswith("s3://"):
                fs.makedirs(parent, exist_ok=True)
            fs.put_file(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write {url!r}: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


#: file names committed last when a folder is synced up (readers trust only these)
#: an installed model set's manifest (orgseg.models.store)
MODEL_SET_MANIFEST = "orgseg_model_set.json"
MARKER_NAMES: tuple[str, ...] = (
    "orgseg_unit.json", "splits_final.json", "orgseg_model.json", MODEL_SET_MANIFEST,
)  # fmt: skip


#: the S3 settings configure_storage made in this process (and may therefore clear)
_SET_HERE: dict[str, str] = {}


def configure_storage(storage: object | None) -> None:
    """Point s3fs at an S3-compatible endpoint (MinIO, Ceph, moto) for this process.

    ``storage`` is a :class:`orgseg.config.StorageConfig` (endpoint URL, region). Credentials
    are never configured here: they come from the standard AWS sources only (environment,
    profile, instance role).
    """
    import fsspec

    endpoint = getattr(storage, "endpoint_url", None)
    region = getattr(storage, "region", None)
    conf = dict(fsspec.config.conf.get("s3", {}))
    client_kwargs = dict(conf.get("client_kwargs", {}))
    # a setting an earlier call made is cleared when this one gives none (a setting of
    # the user's own fsspec config is kept)
    for where, key, value in ((conf, "endpoint_url", endpoint),
                              (client_kwargs, "region_name", region)):  # fmt: skip
        if value:
            where[key] = _SET_HERE[key] = value
        elif key in _SET_HERE and where.get(key) == _SET_HERE.pop(key):
            del where[key]
    if client_kwargs:
        conf["client_kwargs"] = client_kwargs
    else:
        conf.pop("client_kwargs", None)
    # other processes (jobs on other nodes) commit outputs: never answer from a stale listing
    conf["use_listings_cache"] = False
    retries = dict(conf.get("config_kwargs", {}))
    # an S3 endpoint that restarts costs retries, not data
    retries.setdefault("retries", {"max_attempts": 10, "mode": "standard"})
    conf["config_kwargs"] = retries
    fsspec.config.conf["s3"] = conf
    # filesystems cached before this carry the old settings
    with contextlib.suppress(Exception):
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()


def sync_down(
    url: str, local_dir: str, *, only: tuple[str, ...] | None = None
) -> dict[str, tuple[int, int]]:
    """Copy the files under ``url`` into ``local_dir`` (a missing prefix: nothing), only
    those named in ``only`` when given. Returns ``{relative path: (size, mtime_ns)}`` of
    what was copied, for :func:`sync_up` to leave unchanged files alone."""
    fs, path = filesystem(url)
    if not fs.exists(path):
        return {}
    root = path.rstrip("/")
    copied: dict[str, tuple[int, int]] = {}
    for remote in fs.find(root):
        rel = remote[len(root) + 1 :]
        if only is not None and os.path.basename(rel) not in only:
            continue
        dest = os.path.join(local_dir, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        fs.get_file(remote, dest)
        st = os.stat(dest)
        copied[rel] = (st.st_size, st.st_mtime_ns)
    return copied


def _is_marker(name: str) -> bool:
    return os.path.basename(name) in MARKER_NAMES


def sync_up(
    local_dir: str, url: str, *, unchanged: dict[str, tuple[int, int]] | None = None
) -> int:
    """Upload ``local_dir``'s files to ``url``, data first and marker files
    (:data:`MARKER_NAMES`) last, leaving out files still as :func:`sync_down` left them
    (``unchanged``: relative path -> (size, mtime_ns)). Returns the number uploaded."""
    fs, path = filesystem(url)
    root = path.rstrip("/")
    unchanged = unchanged or {}
    files = []
    for dirpath, _, names in os.walk(local_dir):
        for name in names:
            if ".tmp" in name:
                continue  # another writer's uncommitted temporary
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, local_dir).replace(os.sep, "/")
            st = os.stat(full)
            if unchanged.get(rel) == (st.st_size, st.st_mtime_ns):
                continue
            files.append(rel)
    files.sort(key=lambda rel: (_is_marker(rel), rel))
    for rel in files:
        dest = f"{root}/{rel}"
        if is_local(url):
            os.makedirs(os.path.dirname(_local_path(dest)), exist_ok=True)
        fs.put_file(os.path.join(local_dir, rel), dest)
    log.debug("synced %d files from %s to %s", len(files), local_dir, url)
    return len(files)
