"""`orgseg sources scan` on the release replicas: the audit files, header-only vs --full."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from orgseg.cli import main
from orgseg.config import RunConfig
from orgseg.pipeline.cases import resolve_registry
from orgseg.pipeline.scan import SCAN_FILES, scan_sources, write_scan


def _config(root, reps) -> RunConfig:
    return RunConfig(
        run_root="unused-run",
        data_root=str(root),
        sources={name: rep.folder.name for name, rep in reps.items()},
        exclude={"amos_0008": "checked by eye: wrong phase"},
    )


def _rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_header_scan_lists_every_case_counts_and_problems(public_releases, tmp_path):
    root, reps = public_releases
    config = _config(root, reps)
    result = scan_sources(config)
    urls = write_scan(result, str(tmp_path / "scan"), resolve_registry(config))
    assert set(urls) == set(SCAN_FILES)
    cases = _rows(tmp_path / "scan" / "cases.csv")
    by_id = {r["case_id"]: r for r in cases}
    for name, rep in reps.items():
        for cid in rep.expected:
            assert by_id[cid]["source"] == name
    assert by_id["case_00210"]["status"] == "unlabelled"
    assert by_id["lits_29"]["status"] == "excluded" and "grid" in by_id["lits_29"]["problem"]
    assert "wrong phase" in by_id["amos_0008"]["problem"]
    # headers cannot see float labels that are not integral: that takes --full
    assert by_id["ctorg_7"]["status"] == "ok"
    assert int(by_id["s0011"]["size_bytes"]) > 0
    assert by_id["s0011"]["label_urls"].count(";") >= 60  # every structure file it uses
    ab1 = by_id["BDMAP_00000002"]
    assert "adrenal_glands" not in ab1["organs"] and "lungs" in ab1["organs"]
    assert "adrenal_gland_right" in ab1["warnings"]
    counts = {r["source"]: r for r in _rows(tmp_path / "scan" / "counts.csv")}
    assert counts["abdomenatlas"]["liver"] == "2" and counts["abdomenatlas"]["lungs"] == "1"
    assert counts["lits"]["liver"] == "2"  # lits_29 is excluded
    png = (tmp_path / "scan" / "counts.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    summary = json.loads((tmp_path / "scan" / "scan.json").read_text())
    assert summary["mode"] == "headers"
    assert summary["sources"]["kits19"]["ok"] == 2
    assert summary["sources"]["kits19"]["unlabelled"] == 1
    assert "| source |" in (tmp_path / "scan" / "counts.md").read_text()


def test_full_scan_reads_values_and_empty_masks(public_releases, tmp_path):
    root, reps = public_releases
    subset = {k: reps[k] for k in ("ct_org", "amos22", "totalsegmentator")}
    config = _config(root, subset)
    result = scan_sources(config, full=True)
    write_scan(result, str(tmp_path / "full"), resolve_registry(config))
    by_id = {r.case_id: r for r in result.rows}
    assert by_id["ctorg_7"].status == "excluded" and "integer" in by_id["ctorg_7"].problem
    assert by_id["ctorg_140"].unmapped == (7,)
    # TotalSegmentator ships all-zero files: --full counts only non-empty masks
    assert "liver" in by_id["s0011"].organs and "brain" not in by_id["s0011"].organs
    values = _rows(tmp_path / "full" / "label_values.csv")
    found = {(r["source"], r["value"]): r for r in values}
    assert found[("ct_org", "7")]["organ"] == "UNMAPPED"
    assert found[("ct_org", "7")]["cases_found"] == "1"
    assert found[("amos22", "9")]["organ"] == "unused"
    assert found[("amos22", "6")]["organ"] == "liver"


def test_cli_scan_prints_a_summary_and_exits_1_on_exclusions(public_releases, tmp_path, capsys):
    root, reps = public_releases
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"run_root: {tmp_path / 'run'}\ndata_root: {root}\n"
        f"sources:\n  lits: {reps['lits'].folder.name}\n  kits19: {reps['kits19'].folder.name}\n"
    )
    code = main(["sources", "scan", "-c", str(cfg), "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1
    assert "EXCLUDED lits/lits_29" in out
    assert "kits19" in out and (tmp_path / "out" / "cases.csv").exists()
    with pytest.raises(SystemExit):
        main(["sources", "scan", "-c", str(cfg)])
