"""Job ``manifest``: the case table, exclusions and splits.

The ``cases`` shards commit one record (or one exclusion) per case; this unit reads them
all (one listing, then concurrent reads), prepares any case no shard did, and splits per
source: the source's official test list where it has one, else a seeded fraction; the
rest is for cross-validation. The manifest (``manifest.json``) records it all with file
hashes and the exclusions; the same seed gives the same split.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable

from orgseg.config import RunConfig
from orgseg.core.splits import hold_out, stable_seed
from orgseg.errors import DataContractError
from orgseg.io import exists, join_url, read_bytes, write_bytes
from orgseg.io.storage import filesystem
from orgseg.pipeline.cases import (
    CaseRecord,
    Manifest,
    committed_case_files,
    discover_cases,
    prepare_or_exclude,
    resolve_registry,
)
from orgseg.pipeline.exclusions import Exclusion, load_exclusions, summary_line, triage
from orgseg.pipeline.layout import RunLayout
from orgseg.sources.registry import Source

log = logging.getLogger(__name__)


def _official_test(source: Source, folder: str, case_ids: list[str]) -> list[str] | None:
    if not source.official_test_list:
        return None
    url = join_url(folder, source.official_test_list)
    if not exists(url):
        log.warning("%s: no official test list %s; holding out a seeded fraction", source.name, url)
        return None
    text = read_bytes(url).decode()
    if url.endswith(".csv"):  # TotalSegmentator meta.csv: image_id;...;split
        lines = [line.split(";") for line in text.splitlines() if line.strip()]
        head = [h.strip() for h in lines[0]]
        try:
            id_col, split_col = head.index("image_id"), head.index("split")
        except ValueError:
            raise DataContractError(
                f"{url}: expected ';'-separated columns image_id and split, got {head}"
            ) from None
        ids = [row[id_col].strip() for row in lines[1:] if row[split_col].strip() == "test"]
    else:
        ids = [line.strip() for line in text.splitlines() if line.strip()]
    return sorted(set(ids) & set(case_ids))


def _read_records(layout: RunLayout, names: list[str]) -> dict[str, dict]:
    """file name -> parsed JSON of committed case files, fetched concurrently."""
    if not names:
        return {}
    urls = {join_url(layout.cases_dir, n): n for n in names}
    fs, _ = filesystem(next(iter(urls)))
    paths = {filesystem(u)[1]: n for u, n in urls.items()}
    blobs = fs.cat(list(paths), on_error="raise")
    if not isinstance(blobs, dict):  # one path: fsspec returns the bytes
        blobs = {next(iter(paths)): blobs}
    return {paths[p]: json.loads(b) for p, b in blobs.items()}


def build_manifest(
    config: RunConfig, *, progress: Callable[[int, int, str], None] | None = None
) -> Manifest:
    """Job ``manifest``: the case table, exclusions and splits from the case records the
    ``cases`` shards committed (a case no shard prepared is prepared here).

    A case that cannot be read, paired or validated is excluded with its reason; the
    stage goes on and logs one summary line.
    """
    layout = RunLayout.of(config)
    excluded_ids = load_exclusions(config)
    if exists(layout.manifest()):
        manifest = Manifest.from_json(read_bytes(layout.manifest()).decode())
        if manifest.seed == config.seed and manifest.config_excluded == tuple(sorted(excluded_ids)):
            log.info("cases: manifest exists (%d cases)", len(manifest.cases))
            return manifest
    registry = resolve_registry(config)
    folders, found = discover_cases(config, registry)
    usable, excluded, unlabelled = triage(found, excluded_ids)
    unmatched = sorted(set(excluded_ids) - {c.case_id for c in found})
    if unmatched:
        log.warning("cases: exclude lists ids that no source has: %s", unmatched[:20])
    done = committed_case_files(layout)
    wanted = [
        n for c in usable for n in (f"{c.case_id}.json", f"{c.case_id}.excluded.json") if n in done
    ]
    committed = _read_records(layout, wanted)
    records: list[CaseRecord] = []
    missing = [
        c
        for c in usable
        if f"{c.case_id}.json" not in committed and f"{c.case_id}.excluded.json" not in committed
    ]
    if missing:
        log.warning(
            "cases: %d case(s) no shard prepared (sources changed?); preparing them here: %s",
            len(missing),
            [c.case_id for c in missing[:10]],
        )
    for i, case in enumerate(usable, start=1):
        if progress is not None:
            progress(i, len(usable), case.case_id)
        got: CaseRecord | Exclusion
        if f"{case.case_id}.json" in committed:
            got = CaseRecord.from_dict(committed[f"{case.case_id}.json"])
        elif f"{case.case_id}.excluded.json" in committed:
            got = Exclusion(**committed[f"{case.case_id}.excluded.json"])
        else:
            got = prepare_or_exclude(config, layout, registry, case)
        if isinstance(got, CaseRecord):
            records.append(got)
        else:
            excluded.append(got)
    test: list[str] = []
    for name, folder in folders.items():
        ids = [r.case_id for r in records if r.source == name]
        official = _official_test(registry[name], folder, ids)
        test += (
            official
            if official is not None
            else hold_out(
                ids, fraction=config.split.test_fraction, seed=stable_seed(config.seed, name)
            )
        )
    train = sorted(set(r.case_id for r in records) - set(test))
    manifest = Manifest(
        cases=tuple(records),
        test=tuple(sorted(test)),
        train=tuple(train),
        seed=config.seed,
        excluded=tuple(excluded),
        config_excluded=tuple(sorted(excluded_ids)),
    )
    write_bytes(layout.manifest(), manifest.to_json().encode())
    reasons = Counter(e.source for e in excluded)
    log.info("cases: %s", summary_line(len(records), excluded))
    if unlabelled:
        log.info("cases: %d unlabelled images skipped (not training cases)", unlabelled)
    log.info(
        "cases: %d train, %d test; excluded per source: %s", len(train), len(test), dict(reasons)
    )
    return manifest
