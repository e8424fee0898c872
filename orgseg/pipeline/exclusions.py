"""Which cases a run leaves out, and why: the config's exclusion list, duplicate ids,
discovery problems; and the one summary line the cases stage logs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from orgseg.config import RunConfig
from orgseg.errors import ConfigError
from orgseg.io import exists, read_bytes
from orgseg.pipeline.discovery import CaseFiles


@dataclass(frozen=True, slots=True, kw_only=True)
class Exclusion:
    """A case left out of the run, and why."""

    case_id: str
    source: str
    image_url: str
    reason: str


def load_exclusions(config: RunConfig) -> dict[str, str]:
    """case id -> reason, from the config's ``exclude`` (ids, mapping, or a file/URL)."""
    spec = config.exclude
    if isinstance(spec, str):
        if not exists(spec):
            raise ConfigError(
                f"exclude: {spec!r} does not exist; give a file/URL of case ids (one per "
                "line, optional '# reason') or a list of ids"
            )
        out = {}
        for line in read_bytes(spec).decode().splitlines():
            case_id, _, reason = line.partition("#")
            if case_id.strip():
                out[case_id.strip()] = reason.strip() or f"listed in {spec}"
        return out
    if isinstance(spec, Mapping):
        return {str(k): str(v) or "excluded in the config" for k, v in spec.items()}
    return {str(c): "excluded in the config" for c in spec}


def triage(
    found: list[CaseFiles], excluded_ids: Mapping[str, str]
) -> tuple[list[CaseFiles], list[Exclusion], int]:
    """Usable cases, exclusions (config, duplicate ids, discovery problems), unlabelled count."""
    usable: list[CaseFiles] = []
    excluded: list[Exclusion] = []
    seen: dict[str, CaseFiles] = {}
    unlabelled = 0
    for case in found:
        if case.unlabelled:
            unlabelled += 1
            continue
        reason = ""
        if case.case_id in excluded_ids:
            reason = f"excluded by the config: {excluded_ids[case.case_id]}"
        elif case.case_id in seen:
            first = seen[case.case_id]
            reason = (
                f"case id {case.case_id!r} is also a case of source {first.source!r} "
                f"({first.image_url}); case ids must be unique across sources: exclude one "
                "of them or give a source a case_id prefix in its layout"
            )
        elif case.problem:
            reason = case.problem
        if reason:
            excluded.append(exclusion(case, reason))
            continue
        seen[case.case_id] = case
        usable.append(case)
    return usable, excluded, unlabelled


def exclusion(case: CaseFiles, reason: str) -> Exclusion:
    return Exclusion(
        case_id=case.case_id, source=case.source, image_url=case.image_url, reason=reason
    )


def _short(reason: str, limit: int = 160) -> str:
    """The what of a reason (before its '; how to fix'), at most ``limit`` characters."""
    what = reason.split("; ", 1)[0]
    return what if len(what) <= limit else what[: limit - 3] + "..."


def summary_line(n_cases: int, excluded: list[Exclusion] | tuple[Exclusion, ...]) -> str:
    """``412 cases, 3 excluded: s0011 (reason), ...`` (reasons shortened)."""
    if not excluded:
        return f"{n_cases} cases, 0 excluded"
    shown = "; ".join(f"{e.case_id} ({_short(e.reason)})" for e in excluded[:5])
    more = f"; and {len(excluded) - 5} more (see manifest.json)" if len(excluded) > 5 else ""
    return f"{n_cases} cases, {len(excluded)} excluded: {shown}{more}"
