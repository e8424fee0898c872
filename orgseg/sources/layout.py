"""A source's on-disk layout as data: path patterns for a case's image and labels.

A pattern is a path relative to the source's folder with placeholders:

* ``{name}`` matches one or more characters within one path segment (shortest first);
* ``{name:REGEX}`` matches REGEX (``{n:\\d+}``, ``{split:imagesTr|imagesVa}``);
* a placeholder used twice must match the same text both times;
* ``{ext}`` is an image suffix (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ...).

Every file under the folder whose path matches ``image`` is a case. ``label`` is filled
in with the values the image matched (a file for ``label_map`` sources, a folder of
per-organ files for ``per_organ_files``), and so is ``case_id``. Hidden files and folders
(``._liver_0.nii.gz`` AppleDouble files from macOS tarballs, ``.DS_Store``,
``__MACOSX/``) are never cases. ``kind: dicom`` layouts are DICOM trees whose
structure sets are paired with their CT series by header (see :mod:`orgseg.io.dicom_tree`).

>>> lay = Layout(image="{batch}/volume-{n:\\\\d+}.nii", label="{batch}/segmentation-{n}.nii",
...              case_id="lits_{n}")
>>> m = match_image(lay, "Training Batch 1/volume-7.nii")
>>> render(lay.case_id, m), render(lay.label, m)
('lits_7', 'Training Batch 1/segmentation-7.nii')
>>> match_image(lay, "Training Batch 1/._volume-7.nii") is None
True
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from orgseg.errors import ConfigError

LayoutKind = Literal["files", "dicom"]

#: placeholders a ``kind: dicom`` case_id may use (read from the RTSTRUCT)
DICOM_FIELDS = ("PatientID",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """Where one source keeps each case's image and labels (see the module docstring).

    The default is nnU-Net's raw format (``imagesTr/<case>_0000.nii.gz`` or
    ``imagesTr/<case>.nii.gz``, ``labelsTr/<case>.nii.gz``), as the Medical Segmentation
    Decathlon ships it.
    """

    kind: LayoutKind = "files"
    image: str = "imagesTr/{case}{channel:(?:_0000)?}{ext}"
    label: str = "labelsTr/{case}{ext}"
    case_id: str = "{case}"
    #: a case whose label file is missing: ``exclude`` it (a problem, with its reason)
    #: or ``skip`` it (the release ships unlabelled test images beside its training set)
    unlabelled: Literal["exclude", "skip"] = "exclude"


def _image_ext() -> str:
    from orgseg.io.volumes import IMAGE_SUFFIXES

    return "|".join(re.escape(s) for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True))


def _placeholders(pattern: str, where: str) -> list[tuple[str, str | None, int, int]]:
    """(name, regex or None, start, end) of each placeholder, braces balanced."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "}":
            raise ConfigError(f"{where}: unmatched '}}' at position {i} of {pattern!r}")
        if pattern[i] != "{":
            i += 1
            continue
        depth, j = 1, i + 1
        while j < len(pattern) and depth:
            depth += {"{": 1, "}": -1}.get(pattern[j], 0)
            j += 1
        if depth:
            raise ConfigError(f"{where}: unclosed '{{' at position {i} of {pattern!r}")
        body = pattern[i + 1 : j - 1]
        name, sep, regex = body.partition(":")
        if not name.isidentifier():
            raise ConfigError(
                f"{where}: placeholder {{{body}}} in {pattern!r} needs a name (letters, digits, "
                "_), e.g. {case} or {n:\\d+}"
            )
        out.append((name, regex if sep else None, i, j))
        i = j
    return out


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str, where: str = "layout") -> tuple[re.Pattern[str], tuple[str, ...]]:
    """The regex a pattern stands for, and its placeholder names in order."""
    parts: list[str] = []
    names: list[str] = []
    pos = 0
    for name, regex, start, end in _placeholders(pattern, where):
        parts.append(re.escape(pattern[pos:start]))
        if name in names:
            parts.append(f"(?P={name})")
        elif name == "ext" and regex is None:
            parts.append(f"(?P<ext>{_image_ext()})")
            names.append(name)
        else:
            parts.append(f"(?P<{name}>{regex if regex is not None else '[^/]+?'})")
            names.append(name)
        pos = end
    parts.append(re.escape(pattern[pos:]))
    try:
        return re.compile("".join(parts)), tuple(names)
    except re.error as exc:
        raise ConfigError(f"{where}: pattern {pattern!r} is not valid ({exc})") from None


def template_names(template: str, where: str = "layout") -> tuple[str, ...]:
    """Placeholder names a template uses."""
    return tuple(dict.fromkeys(n for n, _, _, _ in _placeholders(template, where)))


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill a pattern's placeholders with matched values.

    >>> render("{split}/labels-{n}.nii.gz", {"split": "a", "n": "3"})
    'a/labels-3.nii.gz'
    """
    out: list[str] = []
    pos = 0
    for name, _, start, end in _placeholders(template, "layout"):
        out.append(template[pos:start])
        if name not in values:
            raise ConfigError(
                f"layout template {template!r} uses {{{name}}}, which the image pattern does "
                f"not define; it defines {sorted(values)}"
            )
        out.append(values[name])
        pos = end
    out.append(template[pos:])
    return "".join(out)


def is_hidden(rel_path: str) -> bool:
    """Whether any segment of a relative path is hidden (``.x``, ``._x``) or ``__MACOSX``.

    >>> is_hidden("imagesTr/._liver_0.nii.gz"), is_hidden("imagesTr/liver_0.nii.gz")
    (True, False)
    """
    return any(s.startswith(".") or s == "__MACOSX" for s in rel_path.split("/") if s)


def match_image(layout: Layout, rel_path: str) -> dict[str, str] | None:
    """The placeholder values of an image path, or None when it is not a case image."""
    if is_hidden(rel_path):
        return None
    regex, _ = compile_pattern(layout.image)
    m = regex.fullmatch(rel_path)
    return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}


def validate_layout(layout: Layout, where: str) -> Layout:
    """Check that the patterns compile and that label/case_id use only image placeholders."""
    if layout.kind == "dicom":
        unknown = set(template_names(layout.case_id, where)) - set(DICOM_FIELDS)
        if unknown:
            raise ConfigError(
                f"{where}: layout.case_id of a dicom layout may use {list(DICOM_FIELDS)}, "
                f"got {sorted(unknown)}"
            )
        return layout
    _, names = compile_pattern(layout.image, where)
    for key in ("label", "case_id"):
        missing = set(template_names(getattr(layout, key), where)) - set(names)
        if missing:
            raise ConfigError(
                f"{where}: layout.{key} {getattr(layout, key)!r} uses {sorted(missing)}, which "
                f"layout.image {layout.image!r} does not match; it defines {list(names)}"
            )
    if not template_names(layout.case_id, where):
        raise ConfigError(
            f"{where}: layout.case_id {layout.case_id!r} has no placeholder, so every case "
            "would get the same id; use one of the image's, e.g. {case}"
        )
    return layout
