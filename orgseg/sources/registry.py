"""Load, validate and extend the source registry.

A source says how its label files encode organs:

* ``label_map``: one integer label file per case; ``labels`` maps organ -> label values.
* ``per_organ_files``: one binary file per organ per case; ``files`` maps organ -> file name.
* ``rtstruct``: DICOM RTSTRUCT; ``roi_names`` maps organ -> ROI names (case-insensitive).

A label value may feed more than one organ (TotalSegmentator's vertebrae are part of
``whole_bones`` too); each organ's mask is then built independently.

Where a source's files are (its release's own folder and file names) is its ``layout``
(:mod:`orgseg.sources.layout`): adding a dataset is a YAML entry, not code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Literal

import yaml

from orgseg.catalog import ORGANS
from orgseg.configtools import load_dataclass
from orgseg.errors import ConfigError
from orgseg.sources.layout import Layout, validate_layout

SourceFormat = Literal["label_map", "per_organ_files", "rtstruct"]

#: the field that maps organs to labels, per source format
MAPPING_FIELD: dict[str, str] = {
    "label_map": "labels",
    "per_organ_files": "files",
    "rtstruct": "roi_names",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """One public dataset: how its labels map to catalog organs, and where its files are."""

    name: str
    description: str = ""
    format: SourceFormat = "label_map"
    labels: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    roi_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)
    layout: Layout = field(default_factory=Layout)
    #: label values the source uses for structures orgseg does not train (not reported
    #: as unexpected when found)
    unused_labels: tuple[int, ...] = ()
    #: organs this source labels in some cases only (CT-ORG's brain): a case where the
    #: organ's mask is empty does not count as labelling it
    partial_organs: tuple[str, ...] = ()
    #: the release's own test split: a list of case ids (one per line), or a
    #: TotalSegmentator-style ``meta.csv`` (``;``-separated, columns image_id and split)
    official_test_list: str | None = None

    @property
    def mapping(self) -> Mapping[str, tuple[object, ...]]:
        """organ -> label values, file names or ROI names, as this source's format uses."""
        return getattr(self, MAPPING_FIELD[self.format])

    @property
    def organs(self) -> tuple[str, ...]:
        """Organs this source labels manually, in catalog order."""
        return tuple(o for o in ORGANS if o in self.mapping)


def validate_source(source: Source) -> Source:
    """Check a source entry; raise :class:`ConfigError` naming the entry and the fix."""
    where = f"source {source.name!r}"
    if not source.mapping:
        raise ConfigError(
            f"{where}: format {source.format!r} needs a non-empty "
            f"'{MAPPING_FIELD[source.format]}' "
            "mapping of organ -> values"
        )
    for key, mapping in (
        ("labels", source.labels),
        ("files", source.files),
        ("roi_names", source.roi_names),
        ("notes", source.notes),
        ("partial_organs", dict.fromkeys(source.partial_organs)),
    ):
        unknown = sorted(set(mapping) - set(ORGANS))
        if unknown:
            raise ConfigError(
                f"{where}: '{key}' names unknown organ(s) {unknown}; valid organs are "
                f"{sorted(ORGANS)}"
            )
    for organ, values in source.labels.items():
        if not values or any(v <= 0 for v in values):
            raise ConfigError(
                f"{where}: labels.{organ} must be a non-empty list of positive label "
                f"values (0 is background), got {list(values)}"
            )
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}: labels.{organ} repeats a value: {list(values)}")
    for organ, names in source.roi_names.items():
        if not names:
            raise ConfigError(f"{where}: roi_names.{organ} is empty; list the ROI names")
    if (source.format == "rtstruct") != (source.layout.kind == "dicom"):
        raise ConfigError(
            f"{where}: format {source.format!r} needs layout.kind "
            f"{'dicom' if source.format == 'rtstruct' else 'files'!r}, got "
            f"{source.layout.kind!r}"
        )
    validate_layout(source.layout, where)
    return source


@dataclass(frozen=True, slots=True)
class SourceRegistry:
    """An immutable name -> :class:`Source` mapping; :meth:`extended` returns a new one."""

    sources: Mapping[str, Source]

    def __getitem__(self, name: str) -> Source:
        try:
            return self.sources[name]
        except KeyError:
            raise ConfigError(
                f"unknown source {name!r}; registered sources are {sorted(self.sources)}. "
                "Add it in a registry YAML (see orgseg/sources/builtin.yaml)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.sources

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.sources)

    def names(self) -> tuple[str, ...]:
        return tuple(self.sources)

    def extended(self, other: SourceRegistry | Mapping[str, Source]) -> SourceRegistry:
        """A registry with ``other``'s sources added (same name replaces)."""
        extra = other.sources if isinstance(other, SourceRegistry) else other
        return SourceRegistry({**self.sources, **extra})

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            {"sources": {n: source_to_dict(s) for n, s in self.sources.items()}}, sort_keys=False
        )


def source_to_dict(source: Source) -> dict[str, Any]:
    out: dict[str, Any] = {"description": source.description, "format": source.format}
    if source.labels:
        out["labels"] = {k: list(v) for k, v in source.labels.items()}
    if source.files:
        out["files"] = {k: list(v) for k, v in source.files.items()}
    if source.roi_names:
        out["roi_names"] = {k: list(v) for k, v in source.roi_names.items()}
    if source.notes:
        out["notes"] = dict(source.notes)
    out["layout"] = {
        f.name: getattr(source.layout, f.name) for f in dataclasses.fields(source.layout)
    }
    if source.unused_labels:
        out["unused_labels"] = list(source.unused_labels)
    if source.partial_organs:
        out["partial_organs"] = list(source.partial_organs)
    if source.official_test_list:
        out["official_test_list"] = source.official_test_list
    return out


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _expand_ranges(values: list[Any], where: str) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, str) and ".." in v:
            lo, _, hi = v.partition("..")
            try:
                out.extend(range(int(lo), int(hi) + 1))
            except ValueError:
                raise ConfigError(
                    f"{where}: cannot read range {v!r}; write it as 'A..B' with integers"
                ) from None
        else:
            out.append(v)
    return out


def parse_registry(data: Any, *, where: str = "registry") -> SourceRegistry:
    """Build a registry from parsed YAML: ``{"sources": {name: {...}}}``."""
    if not isinstance(data, Mapping) or set(data) != {"sources"}:
        raise ConfigError(
            f"{where}: expected a mapping with the single key 'sources', got "
            f"{sorted(data) if isinstance(data, Mapping) else type(data).__name__}"
        )
    sources = {}
    for name, entry in (data["sources"] or {}).items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: source {name!r} must be a mapping, got {entry!r}")
        entry = dict(entry)
        # YAML conveniences: a single value may be written bare; "A..B" is an inclusive range
        for key in ("labels", "files", "roi_names"):
            if isinstance(entry.get(key), Mapping):
                entry[key] = {o: _as_list(v) for o, v in entry[key].items()}
        if isinstance(entry.get("labels"), Mapping):
            entry["labels"] = {
                o: _expand_ranges(v, f"{where}: source {name!r} labels.{o}")
                for o, v in entry["labels"].items()
            }
        if "unused_labels" in entry:
            entry["unused_labels"] = _expand_ranges(
                _as_list(entry["unused_labels"]), f"{where}: source {name!r} unused_labels"
            )
        source = load_dataclass(Source, {"name": name, **entry}, where=f"{where}: source {name!r}")
        sources[name] = validate_source(source)
    return SourceRegistry(sources)


def load_registry(text: str, *, where: str = "registry") -> SourceRegistry:
    """Parse registry YAML text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc}); fix the syntax") from None
    return parse_registry(data, where=where)


def builtin_registry() -> SourceRegistry:
    """The public sources orgseg ships entries for."""
    text = resources.files("orgseg.sources").joinpath("builtin.yaml").read_text()
    return load_registry(text, where="builtin.yaml")


def registry_with(*urls: str) -> SourceRegistry:
    """The built-in sources extended by the registry YAML at each URL, in order."""
    from orgseg.io import read_bytes

    registry = builtin_registry()
    for url in urls:
        registry = registry.extended(load_registry(read_bytes(url).decode(), where=url))
    return registry


def with_source(registry: SourceRegistry, source: Source) -> SourceRegistry:
    """A registry with one more (validated) source."""
    return registry.extended({source.name: validate_source(replace(source))})
