"""Write a multi-source phantom set to any URL, laid out like real public datasets.

Layout under ``root``::

    sources.yaml                      registry entries of the phantom sources
    phantoms.json                     cases, sizes, organ label ids of the ground truth
    <source>/imagesTr/<case>.nii.gz   CT (int16 HU), stored in a RAS-like axis order
    <source>/labelsTr/<case>.nii.gz   the source's partial labels, its own label values
    <source>/test_cases.txt           official test list (first source only)
    ground_truth/<case>.nii.gz        every phantom organ, catalog label ids
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from orgseg.core.orientation import from_canonical, to_canonical
from orgseg.core.volume import Volume
from orgseg.io import join_url, write_bytes, write_volume
from orgseg.phantoms import make_phantom, plan_sources
from orgseg.phantoms.anatomy import PHANTOM_ORGANS
from orgseg.sources.layout import render
from orgseg.sources.registry import SourceRegistry

log = logging.getLogger(__name__)

SizePreset = Literal["small", "whole-body"]

SIZE_PRESETS: dict[str, dict[str, object]] = {
    "small": {"shape": (48, 64, 64), "spacing_mm": (8.0, 7.5, 7.5), "extent": "torso"},
    "whole-body": {
        "shape": (200, 128, 128),
        "spacing_mm": (8.0, 3.75, 3.75),
        "extent": "whole_body",
    },
}

# files are stored the way many converters write NIfTI: x and y axes flipped against LPS
_FILE_DIRECTION = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])


@dataclass(frozen=True, slots=True, kw_only=True)
class PhantomSetConfig:
    n_sources: int = 3
    n_cases: int = 6
    size: SizePreset = "small"
    seed: int = 0
    organs: tuple[str, ...] = PHANTOM_ORGANS
    paediatric_fraction: float = 0.2


def _file_geometry(canonical_array: np.ndarray, spacing_mm: tuple[float, float, float]) -> Volume:
    """Store a canonical phantom array under the flipped file direction."""
    file_like = Volume(
        np.zeros(canonical_array.shape, np.uint8), spacing_mm=spacing_mm, direction=_FILE_DIRECTION
    )
    _, reorientation = to_canonical(file_like)
    return from_canonical(canonical_array, reorientation)


def write_phantom_set(root: str, config: PhantomSetConfig) -> SourceRegistry:
    """Generate and write the set; return the registry of its sources."""
    plan = plan_sources(
        n_sources=config.n_sources,
        n_cases=config.n_cases,
        organs=config.organs,
        seed=config.seed,
        paediatric_fraction=config.paediatric_fraction,
    )
    preset = SIZE_PRESETS[config.size]
    sources = {s.name: s for s in plan.sources}
    meta: dict[str, object] = {"size": config.size, "seed": config.seed, "cases": []}
    for i, case in enumerate(plan.cases):
        phantom = make_phantom(
            shape=preset["shape"],  # type: ignore[arg-type]
            spacing_mm=preset["spacing_mm"],  # type: ignore[arg-type]
            extent=preset["extent"],  # type: ignore[arg-type]
            seed=case.seed,
            paediatric=case.paediatric,
        )
        source = sources[case.source]
        partial = np.zeros_like(phantom.labels)
        for organ, values in source.labels.items():
            partial[phantom.labels == phantom.label_ids[organ]] = values[0]
        base = join_url(root, case.source)
        names = {"case": case.case_id, "channel": "", "ext": ".nii.gz"}
        write_volume(
            _file_geometry(phantom.ct_hu, phantom.spacing_mm),
            join_url(base, render(source.layout.image, names)),
        )
        write_volume(
            _file_geometry(partial, phantom.spacing_mm),
            join_url(base, render(source.layout.label, names)),
        )
        write_volume(
            _file_geometry(phantom.labels, phantom.spacing_mm),
            join_url(root, "ground_truth", f"{case.case_id}.nii.gz"),
        )
        meta["cases"].append(  # type: ignore[attr-defined]
            {
                "case_id": case.case_id,
                "source": case.source,
                "paediatric": case.paediatric,
                "official_test": case.official_test,
            }
        )
        meta["label_ids"] = phantom.label_ids
        log.info("phantom %d/%d: %s", i + 1, len(plan.cases), case.case_id)
    for source in plan.sources:
        if source.official_test_list:
            tests = [c.case_id for c in plan.cases if c.source == source.name and c.official_test]
            write_bytes(
                join_url(root, source.name, source.official_test_list),
                ("\n".join(tests) + "\n").encode(),
            )
    registry = SourceRegistry(sources)
    write_bytes(join_url(root, "sources.yaml"), registry.to_yaml().encode())
    write_bytes(join_url(root, "phantoms.json"), json.dumps(meta, indent=2).encode())
    return registry
