"""Published model sets as data: the built-in registry (``builtin.yaml``) plus any YAML
of the same shape a user names (``ORGSEG_MODEL_REGISTRY``, ``<models folder>/registry.yaml``).

A model set is one or more nnU-Net v2 result folders ("parts") run on the same CT and
merged into one label map of the set's own ("native") classes. This module only
describes them; :mod:`orgseg.models.store` installs them and
:mod:`orgseg.inference.model_set` runs them.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from orgseg.catalog import ORGANS
from orgseg.configtools import load_dataclass
from orgseg.defaults import TILE_STEP
from orgseg.errors import ConfigError

BUILTIN = Path(__file__).with_name("builtin.yaml")
#: environment variable: extra registry YAML files, separated by ':'
REGISTRY_ENV = "ORGSEG_MODEL_REGISTRY"
#: a part whose labels are read from its own dataset.json
FROM_DATASET_JSON = "dataset_json"

Merge = Literal["single", "overwrite", "priority"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceSettings:
    """The settings a set's authors predict with."""

    #: sliding-window step as a fraction of the patch
    tile_step_size: float = TILE_STEP
    #: folds to ensemble (None: every fold the folder has)
    folds: tuple[int, ...] | None = None
    #: test-time mirroring (only where the checkpoint allows it)
    mirroring: bool = False
    #: the isotropic grid the authors resample to before nnU-Net (TotalSegmentator: 1.5);
    #: orgseg lets nnU-Net's own resampling to the plans' spacing do it, and warns when a
    #: part's plans predict on another grid
    resample_mm: float | None = None
    #: the voxel order the networks were trained on: "LPS" (orgseg's canonical frame, as
    #: SimpleITK reads an LPS file: nnU-Net's own readers) or "RAS" (nibabel's closest
    #: canonical, which TotalSegmentator reorients every input to before nnU-Net)
    orientation: Literal["LPS", "RAS"] = "LPS"


@dataclass(frozen=True, slots=True, kw_only=True)
class PartEntry:
    """One nnU-Net result folder of a set."""

    #: the folder inside the installed set; ``*`` and ``?`` match (see :func:`folder_matches`)
    folder: str
    #: a zip under the set's ``url_base``, or a full URL (None: import by hand)
    archive: str | None = None
    #: sha256 of the archive, when the publisher states it
    sha256: str | None = None
    #: part-local class names, ids 1..n in order, or ``dataset_json``
    labels: tuple[str, ...] | str = FROM_DATASET_JSON
    #: the organ of a binary part (merge: priority)
    organ: str | None = None
    #: the part's cross-validation Dice, when the publisher states it (merge: priority)
    cv_dice: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSetEntry:
    name: str
    description: str = ""
    licence: str = ""
    homepage: str | None = None
    url_base: str | None = None
    manual: str | None = None
    merge: Merge = "single"
    classes: tuple[str, ...] | None = None
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    parts: tuple[PartEntry, ...] = ()

    def __post_init__(self) -> None:
        if not self.parts:
            raise ConfigError(f"model set {self.name}: expected at least one part, got none")
        if self.merge == "single" and len(self.parts) != 1:
            raise ConfigError(
                f"model set {self.name}: merge 'single' needs one part, got {len(self.parts)}; "
                "use merge: overwrite or priority for several"
            )
        if self.merge == "priority":
            missing = [p.folder for p in self.parts if not p.organ]
            if missing:
                raise ConfigError(
                    f"model set {self.name}: merge 'priority' fuses binary parts, each naming "
                    f"its organ; these parts name none: {missing}"
                )
        if self.classes is not None:
            for part in self.parts:
                if isinstance(part.labels, tuple):
                    unknown = sorted(set(part.labels) - set(self.classes))
                    if unknown:
                        raise ConfigError(
                            f"model set {self.name}: part {part.folder} labels {unknown}, "
                            "which are not among the set's classes"
                        )

    def archive_url(self, part: PartEntry) -> str | None:
        if part.archive is None:
            return None
        if "://" in part.archive:
            return part.archive
        if not self.url_base:
            raise ConfigError(
                f"model set {self.name}: part archive {part.archive!r} is relative but the "
                "set has no url_base"
            )
        return f"{self.url_base.rstrip('/')}/{part.archive}"

    @property
    def fetchable(self) -> bool:
        return all(p.archive for p in self.parts)


@dataclass(frozen=True, slots=True)
class ModelRegistry:
    sets: Mapping[str, ModelSetEntry]
    #: native class name pattern -> catalog organ (``--classes orgseg``)
    catalog_names: Mapping[str, str]

    def names(self) -> list[str]:
        return sorted(self.sets)

    def __contains__(self, name: object) -> bool:
        return name in self.sets

    def __getitem__(self, name: str) -> ModelSetEntry:
        if name not in self.sets:
            raise ConfigError(
                f"unknown model set {name!r}; known sets: {', '.join(self.names())} "
                f"(add one in a registry YAML named by {REGISTRY_ENV})"
            )
        return self.sets[name]

    def catalog_organ(self, native: str) -> str | None:
        """The catalog organ a native class name maps to (None: none)."""
        if native in ORGANS:
            return native
        for pattern, organ in self.catalog_names.items():
            if fnmatch.fnmatchcase(native, pattern):
                return organ
        return None


def _load_file(path: str | Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"model registry {path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"model registry {path}: not valid YAML ({exc})") from None
    unknown = sorted(set(data) - {"model_sets", "catalog_names"})
    if unknown:
        raise ConfigError(
            f"model registry {path}: unknown key(s) {unknown}; valid: catalog_names, model_sets"
        )
    return data


def parse_registry(files: Sequence[str | Path], base: ModelRegistry | None = None) -> ModelRegistry:
    """The registry of ``files`` in order (a later entry of the same name replaces an
    earlier one), on top of ``base``."""
    sets = dict(base.sets) if base else {}
    names = dict(base.catalog_names) if base else {}
    for path in files:
        data = _load_file(path)
        for name, raw in (data.get("model_sets") or {}).items():
            if not isinstance(raw, Mapping):
                raise ConfigError(f"model registry {path}: set {name!r} is not a mapping")
            sets[str(name)] = load_dataclass(
                ModelSetEntry, {"name": str(name), **raw}, where=f"{path}: {name}"
            )
        for pattern, organ in (data.get("catalog_names") or {}).items():
            if organ not in ORGANS:
                raise ConfigError(
                    f"model registry {path}: catalog_names maps {pattern!r} to {organ!r}, "
                    f"not a catalog organ; expected one of {sorted(ORGANS)}"
                )
            names[str(pattern)] = str(organ)
    return ModelRegistry(sets=sets, catalog_names=names)


def user_registry_files(models_dir: str | None = None) -> list[str]:
    """Registry files besides the built-in one: ``<models folder>/registry.yaml`` (local
    folders) and those ``ORGSEG_MODEL_REGISTRY`` names."""
    files = []
    if models_dir and "://" not in models_dir:
        own = Path(models_dir) / "registry.yaml"
        if own.exists():
            files.append(str(own))
    files += [p for p in os.environ.get(REGISTRY_ENV, "").split(":") if p]
    return files


def model_registry(*extra: str | Path, models_dir: str | None = None) -> ModelRegistry:
    """The built-in registry, the user's files, then ``extra``."""
    return parse_registry([BUILTIN, *user_registry_files(models_dir), *extra])


def _norm(text: str) -> str:
    return re.sub(r"[-_]", "_", text.lower())


def folder_matches(pattern: str, relative: str) -> bool:
    """Whether a folder path inside a set matches a part's ``folder`` pattern
    (case-insensitive; ``-`` and ``_`` alike: "Dataset*_liver-binary" matches
    "Dataset804_Liver-binary").

    >>> folder_matches("Dataset*_small_bowel-binary/*__3d_fullres",
    ...                "Dataset810_Small-Bowel-binary/nnUNetTrainer__nnUNetPlans__3d_fullres")
    True
    """
    return fnmatch.fnmatchcase(_norm(relative), _norm(pattern))
