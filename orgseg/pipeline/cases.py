"""Stage 1: the case table, body crops and splits.

For every case of every source (found in its release folder as the registry's layout
says, :mod:`orgseg.pipeline.discovery`): hash its files, load the CT in the canonical
frame, compute the body contour, crop (crop box kept to map back), measure the patient
size, and store the manually labelled organs as masks on the cropped grid. A case that
cannot be read, paired or validated is excluded with its reason, and the stage goes on.
Then split per source: the source's official test list where it has one, else a seeded
fraction; the rest is for cross-validation. The manifest (``manifest.json``) records it
all with file hashes and the exclusions; the same seed gives the same split.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from orgseg.config import RunConfig, source_folders
from orgseg.core.body import body_mask
from orgseg.core.crop import CropBox, bounding_box, crop, crop_volume
from orgseg.core.size import patient_size
from orgseg.core.splits import shard_of
from orgseg.errors import ConfigError, DataContractError
from orgseg.io import exists, join_url, load_ct, read_bytes, write_bytes, write_volume
from orgseg.io.storage import filesystem, names_in
from orgseg.pipeline.discovery import CaseFiles, discover_source
from orgseg.pipeline.exclusions import Exclusion, exclusion, load_exclusions, triage
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.manual import read_manual_labels
from orgseg.sources.registry import Source, SourceRegistry, registry_with

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseRecord:
    case_id: str
    source: str
    image_url: str
    label_url: str
    image_sha256: str
    label_sha256: str
    manual_organs: tuple[str, ...]
    size_group: str
    median_effective_diameter_mm: float
    crop: dict[str, list[int]]
    spacing_mm: tuple[float, float, float]
    #: the CT series when image_url is a DICOM folder
    series_uid: str | None = None
    #: label values (or ROI names) found in the case's labels that the registry does not map
    unmapped_labels: tuple[object, ...] = ()
    #: organ -> volume of its manual mask (the reference pseudo-label QC compares with)
    manual_volumes_ml: dict[str, float] = field(default_factory=dict)

    @property
    def crop_box(self) -> CropBox:
        return CropBox.from_dict(self.crop)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> CaseRecord:
        """From parsed JSON (lists back to tuples)."""
        return cls(
            **{
                **d,
                "manual_organs": tuple(d["manual_organs"]),  # type: ignore[arg-type]
                "spacing_mm": tuple(d["spacing_mm"]),  # type: ignore[arg-type]
                "unmapped_labels": tuple(d.get("unmapped_labels", ())),  # type: ignore[arg-type]
            }
        )  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    cases: tuple[CaseRecord, ...]
    test: tuple[str, ...]
    train: tuple[str, ...]
    seed: int
    excluded: tuple[Exclusion, ...] = ()
    #: the ids the config excluded when this manifest was built (a change rebuilds it)
    config_excluded: tuple[str, ...] = ()

    def case(self, case_id: str) -> CaseRecord:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise DataContractError(f"case {case_id!r} is not in the manifest")

    def to_json(self) -> str:
        return json.dumps(
            {
                "seed": self.seed,
                "train": list(self.train),
                "test": list(self.test),
                "cases": [asdict(c) for c in self.cases],
                "excluded": [asdict(e) for e in self.excluded],
                "config_excluded": list(self.config_excluded),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        d = json.loads(text)
        cases = tuple(CaseRecord.from_dict(c) for c in d["cases"])
        return cls(
            cases=cases,
            test=tuple(d["test"]),
            train=tuple(d["train"]),
            seed=d["seed"],
            excluded=tuple(Exclusion(**e) for e in d.get("excluded", ())),
            config_excluded=tuple(d.get("config_excluded", ())),
        )


def resolve_registry(config: RunConfig) -> SourceRegistry:
    """Built-in sources, plus ``<data_root>/sources.yaml`` and ``config.registry`` if present."""
    urls = [u for u in (join_url(config.data_root, "sources.yaml"),) if exists(u)]
    if config.registry:
        if not exists(config.registry):
            raise ConfigError(f"registry {config.registry!r} does not exist")
        urls.append(config.registry)
    return registry_with(*urls)


def selected_sources(config: RunConfig, registry: SourceRegistry) -> dict[str, str]:
    """name -> release folder of every source the run reads (unknown names refused)."""
    folders = source_folders(config)
    if not folders:
        fs, root = filesystem(config.data_root)
        folders = {
            n: join_url(config.data_root, n)
            for n in registry.names()
            if fs.exists(f"{root.rstrip('/')}/{n}")
        }
    if not folders:
        raise ConfigError(
            f"no registered source has a folder under {config.data_root}; registered: "
            f"{list(registry.names())}. Name them in 'sources' (name: folder) or add a "
            "sources.yaml"
        )
    for name in folders:
        registry[name]  # an unknown name is an error listing the registered ones
    return folders


def discover_cases(
    config: RunConfig, registry: SourceRegistry
) -> tuple[dict[str, str], list[CaseFiles]]:
    """The run's source folders and every case found in them."""
    folders = selected_sources(config, registry)
    found: list[CaseFiles] = []
    for name, folder in folders.items():
        cases = discover_source(registry[name], folder)
        log.info("cases: %s: %d cases found in %s", name, len(cases), folder)
        found += cases
    return folders, found


def _sha256(url: str) -> str:
    fs, path = filesystem(url)
    h = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_of(urls: list[str]) -> str:
    """One file's sha256, or for several one sha256 over their names and hashes."""
    if len(urls) == 1:
        return _sha256(urls[0])
    h = hashlib.sha256()
    for u in sorted(urls):
        h.update(f"{u.rsplit('/', 1)[-1]}:{_sha256(u)}\n".encode())
    return h.hexdigest()


def label_files(source: Source, case: CaseFiles) -> list[str]:
    """The label files a case's manual masks are read from."""
    if source.format == "per_organ_files":
        names = sorted({n for names in case.organ_labels.values() for n in names})
        return [join_url(case.label_url, n) for n in names]
    return [case.label_url] if case.label_url else []


def prepare_case(
    config: RunConfig, layout: RunLayout, source: Source, case: CaseFiles
) -> CaseRecord:
    """Crop, size and manual masks of one case; its record is committed last.

    Raises :class:`DataContractError` when the case cannot be read, paired or validated.
    """
    record_url = layout.case_record(case.case_id)
    ct, reorientation = load_ct(case.image_url, series_uid=case.series_uid)
    wanted = tuple(o for o in source.organs if o in config.strategy1_organs)
    labels = read_manual_labels(source, case, reorientation, wanted)
    organs = [
        o
        for o in wanted
        if o in labels.masks and (o not in source.partial_organs or labels.masks[o].any())
    ]
    if labels.unmapped:
        log.warning(
            "%s: labels %s are not in source %s's mapping (ignored)",
            case.case_id,
            list(labels.unmapped),
            source.name,
        )
    body = body_mask(ct.array, spacing_mm=ct.spacing_mm)
    if not body.any():
        raise DataContractError(
            f"{case.image_url}: no patient found (the body contour is empty); the scan "
            "holds no body to segment"
        )
    if config.body_crop.enabled:
        box = bounding_box(body, spacing_mm=ct.spacing_mm, margin_mm=config.body_crop.margin_mm)
    else:
        box = CropBox((0, 0, 0), ct.shape, ct.shape)
    size = patient_size(ct.array, body, spacing_mm=ct.spacing_mm)
    voxel_ml = float(np.prod(ct.spacing_mm)) / 1000.0
    buf = io.BytesIO()
    np.savez_compressed(buf, **{o: crop(labels.masks[o], box) for o in organs})
    write_volume(crop_volume(ct, box), layout.cropped_ct(case.case_id))
    write_bytes(layout.manual_masks(case.case_id), buf.getvalue())
    image_files = list(case.image_files) or [case.image_url]
    record = CaseRecord(
        case_id=case.case_id,
        source=source.name,
        image_url=case.image_url,
        label_url=case.label_url,
        image_sha256=_sha256_of(image_files),
        label_sha256=_sha256_of(label_files(source, case)),
        manual_organs=tuple(organs),
        size_group=size.group,
        median_effective_diameter_mm=round(size.median_effective_diameter_mm, 1),
        crop=box.to_dict(),
        spacing_mm=ct.spacing_mm,
        series_uid=case.series_uid,
        unmapped_labels=labels.unmapped,
        manual_volumes_ml={
            o: round(float(np.count_nonzero(labels.masks[o])) * voxel_ml, 3) for o in organs
        },
    )
    write_bytes(record_url, json.dumps(asdict(record), indent=2).encode())  # committed last
    return record


def prepare_or_exclude(
    config: RunConfig, layout: RunLayout, registry: SourceRegistry, case: CaseFiles
) -> CaseRecord | Exclusion:
    """One case prepared (its record committed last), or its exclusion recorded."""
    try:
        return prepare_case(config, layout, registry[case.source], case)
    except DataContractError as exc:
        log.warning("cases: %s excluded: %s", case.case_id, exc)
        ex = exclusion(case, str(exc))
        write_bytes(layout.case_exclusion(case.case_id), json.dumps(asdict(ex)).encode())
        return ex


def committed_case_files(layout: RunLayout) -> set[str]:
    """Names of the files under ``<run_root>/cases/``: one (paginated) listing."""
    return names_in(layout.cases_dir)


def prepare_shard(
    config: RunConfig,
    shard: int = 0,
    n_shards: int = 1,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> int:
    """Job ``cases``, one shard: prepare every usable case of shard ``shard`` of
    ``n_shards`` (sorted case ids, round-robin) that has no record or exclusion yet.
    Each case commits its record (or its exclusion) last, so a killed shard resumes at
    its first uncommitted case. Returns how many cases it prepared."""
    layout = RunLayout.of(config)
    registry = resolve_registry(config)
    _, found = discover_cases(config, registry)
    usable, _, _ = triage(found, load_exclusions(config))
    mine = set(shard_of([c.case_id for c in usable], shard, n_shards))
    done = committed_case_files(layout)
    todo = [
        c
        for c in usable
        if c.case_id in mine
        and f"{c.case_id}.json" not in done
        and f"{c.case_id}.excluded.json" not in done
    ]
    log.info(
        "cases shard %d/%d: %d of %d cases to prepare", shard + 1, n_shards, len(todo), len(mine)
    )
    for i, case in enumerate(todo, start=1):
        if progress is not None:
            progress(i, len(todo), case.case_id)
        prepare_or_exclude(config, layout, registry, case)
        log.info("cases shard %d/%d: %d/%d %s", shard + 1, n_shards, i, len(todo), case.case_id)
    return len(todo)


def load_manifest(config: RunConfig) -> Manifest:
    layout = RunLayout.of(config)
    if not exists(layout.manifest()):
        raise DataContractError(f"no manifest at {layout.manifest()}; run the 'cases' stage first")
    return Manifest.from_json(read_bytes(layout.manifest()).decode())


def load_manual_masks(layout: RunLayout, case_id: str) -> Mapping[str, np.ndarray]:
    with np.load(io.BytesIO(read_bytes(layout.manual_masks(case_id)))) as data:
        return {k: data[k] for k in data.files}
