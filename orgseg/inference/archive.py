"""Finding the cases of an archive: image files and DICOM series, at archive scale.

Discovery costs one listing (sizes come with it) plus ranged reads of the first
:data:`HEAD_BYTES` of a few files per folder, many in flight at once: a series folder's
first, middle and last file and every file of an odd size (:func:`_probes`). When those
headers are not all one series, every file of the folder is read (several series in one
folder, or other files beside them). A file whose header runs past the first block is
read again whole (rare: DICOM headers of CT slices are a few KB). Nothing else is
requested per file.

An archive too big for one driver is discovered in parts: part ``k`` of ``n`` takes every
``n``-th of the archive's top-level entries (:func:`discover_part`), and
:func:`merge_parts` joins the parts into one case list. ``--index`` skips discovery
altogether: a prebuilt series index (CSV or Parquet: one row per file with its series UID,
URL and size, as imaging archives export them) is read instead (:func:`cases_from_index`).
"""

from __future__ import annotations

import io
import logging
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orgseg.errors import DataContractError
from orgseg.io.storage import is_dir, list_entries, list_sizes, read_bytes, read_heads, split_suffix
from orgseg.io.volumes import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

#: bytes read from the start of each possible DICOM file to group it into its series
HEAD_BYTES = 8 * 1024
#: a file this far from its folder's median size is read too (it may be another series)
ODD_SIZE_BYTES = 2048
ODD_SIZE_SHARE = 0.02
#: headers read per batch (one progress report per batch)
BATCH_FILES = 2000
NOT_AN_INPUT = "not an image file or a DICOM series; nothing to segment"
#: columns of a series index (``--index``); ``size_bytes`` and ``case_id`` are optional
INDEX_COLUMNS = ("series_uid", "url")

Progress = Callable[[int, int], None]  # (files examined, files in all)


@dataclass(frozen=True, slots=True)
class BulkCase:
    case_id: str
    source_url: str
    series_uid: str = ""
    size_bytes: int = 0
    is_dicom: bool = False
    skip_reason: str = ""  # not a CT input at all (recorded as skipped)


_MORE = object()  # the header runs past the bytes read: read the whole file


def _series_uid(raw: bytes, url: str, *, whole: bool) -> object:
    """The SeriesInstanceUID in a file's bytes (``whole``: the whole file, else its first
    block): a string ("" for a DICOM file without one), None when the file is not DICOM,
    or :data:`_MORE` when the first block does not hold it."""
    from orgseg.io.dicom_tree import parse_header

    if len(raw) < 132 or raw[128:132] != b"DICM":
        return None
    try:
        uid = str(getattr(parse_header(raw, url), "SeriesInstanceUID", "") or "")
    except DataContractError:
        return None if whole else _MORE
    return uid if uid or whole else _MORE


def _uids(urls: Sequence[str], progress: Progress | None) -> dict[str, str | None]:
    """url -> SeriesInstanceUID (None: not DICOM), a batch of ranged reads at a time."""
    out: dict[str, str | None] = {}
    for a in range(0, len(urls), BATCH_FILES):
        batch = urls[a : a + BATCH_FILES]
        again = []
        for url, head in read_heads(batch, HEAD_BYTES).items():
            if isinstance(head, Exception):
                log.warning("%s: cannot read (%s); left out of discovery", url, head)
                out[url] = None
                continue
            uid = _series_uid(head, url, whole=len(head) < HEAD_BYTES)
            if uid is _MORE:
                again.append(url)
            else:
                out[url] = uid  # type: ignore[assignment]
        for url in again:  # the header runs past the first block: the whole file
            try:
                out[url] = _series_uid(read_bytes(url), url, whole=True)  # type: ignore[assignment]
            except Exception as exc:  # noqa: BLE001 - one unreadable file is not a stop
                log.warning("%s: cannot read (%s); left out of discovery", url, exc)
                out[url] = None
        if progress is not None:
            progress(a + len(batch), len(urls))
    return out


def _probes(members: Sequence[tuple[str, int]]) -> list[str]:
    """The files of one folder whose headers stand for all of them: the first, middle and
    last by name, and every file whose size is far from the folder's median (another
    series, such as a scout, has other dimensions)."""
    if len(members) <= 3:
        return [u for u, _ in members]
    median = sorted(size for _, size in members)[len(members) // 2]
    odd = max(ODD_SIZE_BYTES, ODD_SIZE_SHARE * median)  # UIDs alone vary by a few bytes
    picked = {0, len(members) // 2, len(members) - 1}
    picked |= {i for i, (_, size) in enumerate(members) if abs(size - median) > odd}
    return [members[i][0] for i in sorted(picked)]


def _folder_uids(
    files: Sequence[tuple[str, int]], progress: Progress | None
) -> dict[str, str | None]:
    """url -> SeriesInstanceUID (None: not DICOM) of every file, reading headers only of
    each folder's probes (:func:`_probes`): a folder whose probes are all DICOM of one
    series is that series; otherwise (several series, other files) every file of it is
    read."""
    by_folder: dict[str, list[tuple[str, int]]] = {}
    for url, size in files:
        by_folder.setdefault(posixpath.dirname(url), []).append((url, size))
    probes = {folder: _probes(members) for folder, members in by_folder.items()}
    uids = _uids([u for urls in probes.values() for u in urls], progress)
    rest = []
    for folder, members in by_folder.items():
        seen = {uids[u] for u in probes[folder]}
        if len(seen) == 1 and None not in seen:
            uid = next(iter(seen))
            uids.update({u: uid for u, _ in members})
        else:
            rest.extend(u for u, _ in members if u not in uids)
    if rest:
        log.info("discovery: %d folders hold several series or other files: %d more "
                 "headers", len({posixpath.dirname(u) for u in rest}), len(rest))  # fmt: skip
        uids.update(_uids(rest, progress))
    return uids


def _rel_id(rel: str) -> str:
    return rel.replace("/", "__")


def discover_files(
    base: str, files: Sequence[tuple[str, int]], *, progress: Progress | None = None
) -> list[BulkCase]:
    """Cases from (URL, size) of an archive's files (``base``: the archive's root):
    image files by name, DICOM files by their header (one case per folder and series;
    several series in one folder become several cases), the rest skipped with a reason."""
    base = base.rstrip("/")
    cases: list[BulkCase] = []
    others: list[tuple[str, int]] = []
    for url, size in files:
        name = posixpath.basename(url)
        if name.startswith("."):
            continue
        if split_suffix(name)[1].lower() in IMAGE_SUFFIXES:
            stem, _ = split_suffix(url[len(base) + 1 :])
            cases.append(BulkCase(_rel_id(stem), url, "", size, False))
        else:
            others.append((url, size))
    uids = _folder_uids(others, progress)
    series: dict[str, dict[str, int]] = {}  # folder -> uid -> bytes
    skipped: list[tuple[str, int]] = []
    for url, size in others:
        uid = uids.get(url)
        if uid is None:
            skipped.append((url, size))
            continue
        per = series.setdefault(posixpath.dirname(url), {})
        per[uid] = per.get(uid, 0) + size
    for folder, groups in series.items():
        rel = folder[len(base) + 1 :] if len(folder) > len(base) else posixpath.basename(base)
        for uid, size in sorted(groups.items()):
            cid = _rel_id(rel) if len(groups) == 1 else f"{_rel_id(rel)}__{uid[-8:]}"
            cases.append(BulkCase(cid, folder, uid, size, True))
    for url, size in skipped:
        if posixpath.dirname(url) in series:
            continue  # a README beside a series' slices is not a case
        cases.append(BulkCase(_rel_id(url[len(base) + 1 :]), url, "", size, False, NOT_AN_INPUT))
    return _checked(cases, base)


def _checked(cases: list[BulkCase], where: str) -> list[BulkCase]:
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dupes = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        raise DataContractError(
            f"{where}: several inputs map to the same case id: {dupes[:10]}; rename them "
            "or give the archive as an index with a case_id column (--index)"
        )
    return sorted(cases, key=lambda c: c.case_id)


def discover_archive(source_url: str, *, progress: Progress | None = None) -> list[BulkCase]:
    """Every case under ``source_url`` (a folder/prefix, or one image file)."""
    if not is_dir(source_url):
        name = posixpath.basename(source_url.rstrip("/"))
        return [BulkCase(split_suffix(name)[0], source_url)]
    t0 = time.perf_counter()
    files = list_sizes(source_url)
    cases = discover_files(source_url, files, progress=progress)
    log.info(
        "discovery: %d files, %d cases in %.1f s", len(files), len(cases), time.perf_counter() - t0
    )
    if not any(not c.skip_reason for c in cases):
        raise DataContractError(
            f"{source_url}: found no CT to segment; expected image files "
            f"({', '.join(IMAGE_SUFFIXES)}) or DICOM series folders"
        )
    return cases


def part_prefixes(source_url: str, part: int, parts: int) -> list[str]:
    """The top-level entries (URLs) of the archive that discovery part ``part`` (of
    ``parts``) covers: every ``parts``-th, in name order."""
    if not 0 <= part < parts:
        raise DataContractError(f"expected a discovery part in 0..{parts - 1}, got {part}")
    base = source_url.rstrip("/")
    entries = [f"{base}/{name}" for name, _ in list_entries(source_url)]
    return entries[part::parts]


def discover_part(source_url: str, part: int, parts: int) -> list[BulkCase]:
    """The cases under this part's top-level prefixes (see :func:`part_prefixes`)."""
    files: list[tuple[str, int]] = []
    for prefix in part_prefixes(source_url, part, parts):
        files.extend(list_sizes(prefix))
    return discover_files(source_url, sorted(files))


def merge_parts(parts: Sequence[Sequence[BulkCase]], where: str) -> list[BulkCase]:
    """One case list from the parts' (a case id twice is an error, as in one pass)."""
    return _checked([c for p in parts for c in p], where)


def cases_from_index(index_url: str) -> list[BulkCase]:
    """Cases from a series index: CSV or Parquet with one row per file, columns
    ``series_uid``, ``url`` and optionally ``size_bytes`` and ``case_id``. A series is
    one case (its files must lie in one folder); rows without a series UID are image
    files, one case each."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    raw = read_bytes(index_url)
    try:
        if index_url.lower().endswith((".parquet", ".pq")):
            table = pq.read_table(io.BytesIO(raw))
        else:
            table = pacsv.read_csv(
                io.BytesIO(raw),
                convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
            )
    except pa.ArrowInvalid as exc:
        raise DataContractError(
            f"{index_url}: not a readable CSV or Parquet index ({exc})"
        ) from None
    missing = [c for c in INDEX_COLUMNS if c not in table.column_names]
    if missing:
        raise DataContractError(
            f"{index_url}: expected columns {list(INDEX_COLUMNS)} (plus optional size_bytes, "
            f"case_id), got {table.column_names}; missing {missing}"
        )
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    n = table.num_rows
    sizes = cols.get("size_bytes") or [0] * n
    ids = cols.get("case_id") or [None] * n
    groups: dict[str, dict] = {}
    cases: list[BulkCase] = []
    for uid, url, size, cid in zip(cols["series_uid"], cols["url"], sizes, ids, strict=True):
        size = int(size or 0)
        if not url:
            raise DataContractError(f"{index_url}: a row has no url; every row names a file")
        if not uid:
            name = posixpath.basename(str(url))
            cases.append(BulkCase(str(cid or split_suffix(name)[0]), str(url), "", size, False))
            continue
        g = groups.setdefault(str(uid), {"folders": set(), "size": 0, "case_id": cid})
        g["folders"].add(posixpath.dirname(str(url)))
        g["size"] += size
    for uid, g in groups.items():
        folders = sorted(g["folders"])
        cid = str(g["case_id"] or uid)
        if len(folders) != 1:
            cases.append(
                BulkCase(
                    cid, folders[0], uid, g["size"], True,
                    skip_reason=f"series {uid} lies in {len(folders)} folders; orgseg reads "
                    "a series from one folder",
                )
            )  # fmt: skip
            continue
        cases.append(BulkCase(cid, folders[0], uid, g["size"], True))
    log.info("index %s: %d rows, %d cases", index_url, n, len(cases))
    return _checked(cases, index_url)


def balanced_shards(cases: Sequence[BulkCase], shards: int) -> list[list[BulkCase]]:
    """Cases dealt to ``shards`` shards by bytes (largest first, each to the lightest
    shard so far), so shards take about as long though series differ tenfold in size;
    deterministic for one case list."""
    import heapq

    heap = [(0, 0, k) for k in range(shards)]  # (bytes, cases, shard)
    out: list[list[BulkCase]] = [[] for _ in range(shards)]
    for c in sorted(cases, key=lambda c: (-max(c.size_bytes, 1), c.case_id)):
        load, count, k = heapq.heappop(heap)
        out[k].append(c)
        heapq.heappush(heap, (load + max(c.size_bytes, 1), count + 1, k))
    return [sorted(s, key=lambda c: c.case_id) for s in out]
