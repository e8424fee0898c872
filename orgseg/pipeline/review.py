"""A person's decisions on pseudo-labels (``pseudo_labels.review``), which overrule QC.

A CSV of ``case,organ,accept|reject`` lines (a ``case,organ,decision`` header and ``#``
comments allowed), as a file or URL; job ``pseudo-qc`` and fusion read it on every run.
"""

from __future__ import annotations

from orgseg.catalog import ORGANS
from orgseg.config import RunConfig
from orgseg.errors import ConfigError
from orgseg.io import exists, read_bytes

REVIEW_DECISIONS = ("accept", "reject")


def parse_review(text: str, *, where: str = "review") -> dict[tuple[str, str], str]:
    """``case,organ,accept|reject`` lines (a header line and ``#`` comments allowed) ->
    (case, organ) -> decision."""
    out: dict[tuple[str, str], str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cells = [c.strip() for c in line.split(",")]
        if n == 1 and [c.lower() for c in cells[:3]] == ["case", "organ", "decision"]:
            continue
        if len(cells) != 3 or cells[2].lower() not in REVIEW_DECISIONS:
            raise ConfigError(
                f"{where}, line {n}: expected 'case,organ,accept|reject', got {line!r}"
            )
        if cells[1] not in ORGANS:
            raise ConfigError(f"{where}, line {n}: unknown organ {cells[1]!r}")
        out[(cells[0], cells[1])] = cells[2].lower()
    return out


def load_review(config: RunConfig) -> dict[tuple[str, str], str]:
    url = config.pseudo_labels.review
    if not url:
        return {}
    if not exists(url):
        raise ConfigError(
            f"pseudo_labels.review: {url!r} does not exist; give a CSV of "
            "'case,organ,accept|reject' or remove the key"
        )
    return parse_review(read_bytes(url).decode(), where=url)
