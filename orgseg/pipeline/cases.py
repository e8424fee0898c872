"""Stage 1: the case table, body crops and splits.

For every case of every source under the data root: hash its files, load the CT in the
canonical frame, compute the body contour, crop (crop box kept to map back), measure the
patient size, and store the manually labelled organs as masks on the cropped grid. Then
split per source: the source's official test list where it has one, else a seeded
fraction; the rest is for cross-validation. The manifest (``manifest.json``) records it
all with file hashes; the same seed gives the same split.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from orgseg.config import RunConfig
from orgseg.core.body import body_mask
from orgseg.core.crop import CropBox, bounding_box, crop, crop_volume
from orgseg.core.labels import masks_from_label_map
from orgseg.core.orientation import to_canonical
from orgseg.core.size import patient_size
from orgseg.core.splits import hold_out, stable_seed
from orgseg.errors import ConfigError, DataContractError
from orgseg.io import exists, join_url, load_ct, read_bytes, read_volume, write_bytes, write_volume
from orgseg.io.storage import filesystem, is_local, split_suffix
from orgseg.io.volumes import IMAGE_SUFFIXES
from orgseg.pipeline.layout import RunLayout
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
                "spacing_mm": tuple(d["spacing_mm"]),
            }
        )  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    cases: tuple[CaseRecord, ...]
    test: tuple[str, ...]
    train: tuple[str, ...]
    seed: int

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
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        d = json.loads(text)
        cases = tuple(CaseRecord.from_dict(c) for c in d["cases"])
        return cls(cases=cases, test=tuple(d["test"]), train=tuple(d["train"]), seed=d["seed"])


def resolve_registry(config: RunConfig) -> SourceRegistry:
    """Built-in sources, plus ``<data_root>/sources.yaml`` and ``config.registry`` if present."""
    urls = [u for u in (join_url(config.data_root, "sources.yaml"),) if exists(u)]
    if config.registry:
        if not exists(config.registry):
            raise ConfigError(f"registry {config.registry!r} does not exist")
        urls.append(config.registry)
    return registry_with(*urls)


def _sha256(url: str) -> str:
    fs, path = filesystem(url)
    h = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _list_cases(config: RunConfig, source: Source) -> dict[str, tuple[str, str]]:
    if source.format == "rtstruct":
        raise ConfigError(
            f"source {source.name!r} ships RTSTRUCT contours; convert them to label maps "
            "first (one NIfTI per case, values as in a label_map entry) and register the "
            "converted set as a label_map source"
        )
    images_url = join_url(config.data_root, source.name, source.images_dir)
    fs, base = filesystem(images_url)
    if not fs.exists(base):
        raise DataContractError(f"source {source.name!r}: no image folder {images_url}")
    out = {}
    for path in sorted(fs.ls(base, detail=False)):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        stem, suffix = split_suffix(name)
        if suffix.lower() not in IMAGE_SUFFIXES:
            continue
        case_id = stem[: -len("_0000")] if stem.endswith("_0000") else stem
        image_url = path if is_local(config.data_root) else fs.unstrip_protocol(path)
        if source.format == "label_map":
            label_url = join_url(
                config.data_root, source.name, source.labels_dir, f"{case_id}{suffix}"
            )
        else:
            label_url = join_url(config.data_root, source.name, source.labels_dir, case_id)
        out[case_id] = (image_url, label_url)
    return out


def _manual_masks(
    source: Source, label_url: str, shape: tuple[int, int, int]
) -> dict[str, np.ndarray]:
    """Manual organ masks of one case in the canonical frame."""
    if source.format == "label_map":
        canon, _ = to_canonical(read_volume(label_url))
        if canon.shape != shape:
            raise DataContractError(
                f"{label_url}: label shape {canon.shape} differs from the image's {shape}"
            )
        return masks_from_label_map(np.asarray(canon.array), source.labels)
    masks = {}
    for organ, files in source.files.items():
        acc = np.zeros(shape, bool)
        for f in files:
            canon, _ = to_canonical(read_volume(join_url(label_url, f)))
            acc |= np.asarray(canon.array) > 0
        masks[organ] = acc
    return masks


def _official_test(config: RunConfig, source: Source, case_ids: list[str]) -> list[str] | None:
    if not source.official_test_list:
        return None
    url = join_url(config.data_root, source.name, source.official_test_list)
    if not exists(url):
        return None
    text = read_bytes(url).decode()
    if url.endswith(".csv"):  # TotalSegmentator meta.csv: image_id;...;split
        lines = [line.split(";") for line in text.splitlines() if line.strip()]
        head = lines[0]
        try:
            id_col, split_col = head.index("image_id"), head.index("split")
        except ValueError:
            raise DataContractError(
                f"{url}: expected columns image_id and split, got {head}"
            ) from None
        ids = [row[id_col] for row in lines[1:] if row[split_col].strip() == "test"]
    else:
        ids = [line.strip() for line in text.splitlines() if line.strip()]
    return sorted(set(ids) & set(case_ids))


def prepare_case(
    config: RunConfig,
    layout: RunLayout,
    source: Source,
    case_id: str,
    image_url: str,
    label_url: str,
) -> CaseRecord:
    """Crop, size and manual masks of one case (skipped when its record exists)."""
    record_url = layout.case_record(case_id)
    if exists(record_url):
        return CaseRecord.from_dict(json.loads(read_bytes(record_url)))
    ct, _ = load_ct(image_url)
    body = body_mask(ct.array, spacing_mm=ct.spacing_mm)
    if config.body_crop.enabled:
        box = bounding_box(body, spacing_mm=ct.spacing_mm, margin_mm=config.body_crop.margin_mm)
    else:
        box = CropBox((0, 0, 0), ct.shape, ct.shape)
    size = patient_size(ct.array, body, spacing_mm=ct.spacing_mm)
    organs = [o for o in source.organs if o in config.strategy1_organs]
    masks = _manual_masks(source, label_url, ct.shape)
    buf = io.BytesIO()
    np.savez_compressed(buf, **{o: crop(masks[o], box) for o in organs})
    write_volume(crop_volume(ct, box), layout.cropped_ct(case_id))
    write_bytes(layout.manual_masks(case_id), buf.getvalue())
    record = CaseRecord(
        case_id=case_id,
        source=source.name,
        image_url=image_url,
        label_url=label_url,
        image_sha256=_sha256(image_url),
        label_sha256=_sha256(label_url) if source.format == "label_map" else "",
        manual_organs=tuple(organs),
        size_group=size.group,
        median_effective_diameter_mm=round(size.median_effective_diameter_mm, 1),
        crop=box.to_dict(),
        spacing_mm=ct.spacing_mm,
    )
    write_bytes(record_url, json.dumps(asdict(record), indent=2).encode())  # committed last
    return record


def build_manifest(config: RunConfig) -> Manifest:
    """Stage ``cases``: the case table and splits (idempotent per case)."""
    layout = RunLayout.of(config)
    if exists(layout.manifest()):
        manifest = Manifest.from_json(read_bytes(layout.manifest()).decode())
        if manifest.seed == config.seed:
            log.info("cases: manifest exists (%d cases)", len(manifest.cases))
            return manifest
    registry = resolve_registry(config)
    fs, root = filesystem(config.data_root)
    names = config.sources or tuple(
        n for n in registry.names() if fs.exists(f"{root.rstrip('/')}/{n}")
    )
    if not names:
        raise ConfigError(
            f"no registered source has a folder under {config.data_root}; registered: "
            f"{list(registry.names())}. Set 'sources' or add a sources.yaml"
        )
    records: list[CaseRecord] = []
    test: list[str] = []
    seen: dict[str, str] = {}
    all_cases = [
        (registry[n], cid, urls)
        for n in names
        for cid, urls in _list_cases(config, registry[n]).items()
    ]
    for i, (source, case_id, (image_url, label_url)) in enumerate(all_cases, start=1):
        if case_id in seen:
            raise DataContractError(
                f"case id {case_id!r} appears in sources {seen[case_id]!r} and {source.name!r}; "
                "rename one of the files so case ids are unique"
            )
        seen[case_id] = source.name
        log.info("cases: %d/%d %s (%s)", i, len(all_cases), case_id, source.name)
        records.append(prepare_case(config, layout, source, case_id, image_url, label_url))
    for name in names:
        ids = [r.case_id for r in records if r.source == name]
        official = _official_test(config, registry[name], ids)
        test += (
            official
            if official is not None
            else hold_out(
                ids, fraction=config.split.test_fraction, seed=stable_seed(config.seed, name)
            )
        )
    train = sorted(set(r.case_id for r in records) - set(test))
    manifest = Manifest(
        cases=tuple(records), test=tuple(sorted(test)), train=tuple(train), seed=config.seed
    )
    write_bytes(layout.manifest(), manifest.to_json().encode())
    log.info("cases: %d train, %d test", len(train), len(test))
    return manifest


def load_manifest(config: RunConfig) -> Manifest:
    layout = RunLayout.of(config)
    if not exists(layout.manifest()):
        raise DataContractError(f"no manifest at {layout.manifest()}; run the 'cases' stage first")
    return Manifest.from_json(read_bytes(layout.manifest()).decode())


def load_manual_masks(layout: RunLayout, case_id: str) -> Mapping[str, np.ndarray]:
    with np.load(io.BytesIO(read_bytes(layout.manual_masks(case_id)))) as data:
        return {k: data[k] for k in data.files}
