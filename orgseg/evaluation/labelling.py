"""How a set of label files encodes catalog organs, and organ masks from it.

A *labelling* is either ``orgseg`` (the catalog's fixed label ids; per-organ files named
``<organ>.nii.gz``) or a source of the registry: ``totalsegmentator`` reads
TotalSegmentator's ``total`` ids or its per-class files (``liver.nii.gz``,
``kidney_left.nii.gz``, ...), merged into catalog organs as the registry says (kidneys =
left + right + cysts, lungs = five lobes, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from orgseg.catalog import ORGANS, label_ids
from orgseg.core.labels import masks_from_label_map
from orgseg.errors import ConfigError
from orgseg.sources.registry import SourceRegistry, builtin_registry

ORGSEG = "orgseg"


@dataclass(frozen=True, slots=True, kw_only=True)
class Labelling:
    """organ -> label values of a label map, and organ -> per-class file names."""

    name: str
    label_values: Mapping[str, tuple[int, ...]]
    file_names: Mapping[str, tuple[str, ...]]

    @property
    def organs(self) -> tuple[str, ...]:
        """Catalog organs this labelling can express, in catalog order."""
        known = set(self.label_values) | set(self.file_names)
        return tuple(o for o in ORGANS if o in known)

    def masks_from_label_map(
        self, label_map: np.ndarray, organs: tuple[str, ...] | None = None
    ) -> dict[str, np.ndarray]:
        """Boolean masks of ``organs`` (default: all this labelling expresses)."""
        wanted = self.organs if organs is None else organs
        mapping = {o: self.label_values[o] for o in wanted if o in self.label_values}
        return masks_from_label_map(label_map, mapping)


def labelling(name: str, registry: SourceRegistry | None = None) -> Labelling:
    """The labelling called ``name``: ``orgseg`` or a registry source name."""
    if name == ORGSEG:
        ids = label_ids(ORGANS)
        return Labelling(
            name=ORGSEG,
            label_values={o: (i,) for o, i in ids.items()},
            file_names={o: (f"{o}.nii.gz",) for o in ORGANS},
        )
    registry = registry or builtin_registry()
    if name not in registry:
        raise ConfigError(
            f"unknown labelling {name!r}; use 'orgseg' (catalog ids) or a registry source: "
            f"{sorted(registry.names())}"
        )
    source = registry[name]
    if source.format == "rtstruct":
        raise ConfigError(
            f"source {name!r} stores RTSTRUCT contours; evaluation reads label maps or "
            "per-organ files. Write them as label maps first (orgseg run cases reads them)"
        )
    # a source may describe both (TotalSegmentator: `total` ids and per-class files)
    return Labelling(name=name, label_values=dict(source.labels), file_names=dict(source.files))
