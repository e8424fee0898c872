"""Pseudo-label QC and trust-aware fusion on a hand-built run root (no network): six
training cases whose pseudo-labels are good, implausibly large, empty where the scan
must hold the organ, or from disagreeing folds."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from orgseg.config import FusionConfig, PseudoLabelConfig, RunConfig
from orgseg.core.volume import Volume
from orgseg.errors import ConfigError
from orgseg.io import read_volume, write_bytes, write_volume
from orgseg.pipeline.cases import CaseRecord, Manifest
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.pseudo_qc import run_qc, untrusted_masks
from orgseg.pipeline.review import parse_review
from orgseg.pipeline.strategy2 import fused_records, ignore_id, run_fusion_shard

SHAPE = (24, 32, 32)
SPACING = (4.0, 4.0, 4.0)
VOXEL_ML = 0.064
CASES = [f"c{i}" for i in range(6)]
LIVER, LUNGS = (
    (slice(4, 12), slice(4, 14), slice(4, 14)),
    (slice(14, 22), slice(16, 28), slice(4, 28)),
)
BLADDER = (slice(0, 3), slice(20, 24), slice(14, 18))


def box(region, grow: int = 0) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[tuple(slice(max(0, s.start - grow), s.stop + grow) for s in region)] = True
    return m


def build_run(tmp_path, review: str | None = None, untrusted: str = "ignore") -> RunConfig:
    config = RunConfig(
        run_root=str(tmp_path / "run"),
        data_root=str(tmp_path / "data"),
        strategy1_organs=("liver", "lungs", "urinary_bladder"),
        strategy2_organs=("liver", "lungs"),
        pseudo_labels=PseudoLabelConfig(review=review, sheet_masks=2),
        fusion=FusionConfig(untrusted=untrusted, ignore_margin_mm=4.0),
    )
    layout = RunLayout.of(config)
    records = []
    for i, case_id in enumerate(CASES):
        ct = np.full(SHAPE, -1000, np.int16)
        ct[:, 2:30, 2:30] = 40
        write_volume(Volume(ct, spacing_mm=SPACING), layout.cropped_ct(case_id))
        manual = {"urinary_bladder": box(BLADDER)}
        if i < 3:  # manual livers of three sizes: the reference for the volume z-score
            manual["liver"] = box(LIVER, grow=i % 2)
            manual["liver"][4 : 4 + i, 4:6, 4:6] = False
        buf = io.BytesIO()
        np.savez_compressed(buf, **manual)
        write_bytes(layout.manual_masks(case_id), buf.getvalue())
        records.append(
            CaseRecord(
                case_id=case_id,
                source="src_a" if i % 2 else "src_b",
                image_url="x",
                label_url="y",
                image_sha256="0",
                label_sha256="0",
                manual_organs=tuple(manual),
                size_group="adult",
                median_effective_diameter_mm=300.0,
                crop={},
                spacing_mm=SPACING,
                manual_volumes_ml={o: float(m.sum()) * VOXEL_ML for o, m in manual.items()},
            )  # fmt: skip
        )
        pseudo = {"lungs": (box(LUNGS), 0.5 if i == 2 else 0.97)}
        if i >= 3:
            liver = {3: box(LIVER), 4: np.zeros(SHAPE, bool), 5: box(LIVER, grow=4)}[i]
            pseudo["liver"] = (liver, 0.95)
        for organ, (mask, agreement) in pseudo.items():
            write_volume(
                Volume(mask.astype(np.uint8), spacing_mm=SPACING),
                layout.pseudo_mask(case_id, organ),
            )
            figures = {
                "volume_ml": float(mask.sum()) * VOXEL_ML,
                "fold_agreement": agreement,
                "volume_z": None,
                "fragmented_share": 0.0,
                "outside_body_share": 0.0,
            }
            write_bytes(
                layout.pseudo_record(case_id, organ),
                json.dumps({"organ": organ, "voxels": int(mask.sum()), "qc": figures}).encode(),
            )
    manifest = Manifest(cases=tuple(records), test=(), train=tuple(CASES), seed=0)
    write_bytes(layout.manifest(), manifest.to_json().encode())
    write_bytes(layout.cv_dice(1), json.dumps({"liver": 0.9, "lungs": 0.95}).encode())
    return config


def qc_rows(config) -> dict[tuple[str, str], dict]:
    with open(RunLayout.of(config).qc_file("qc.csv")) as f:
        return {(r["case_id"], r["organ"]): r for r in csv.DictReader(f)}


def test_qc_flags_implausible_empty_and_disagreeing_masks_and_writes_its_folder(tmp_path):
    config = build_run(tmp_path)
    run_qc(config)
    rows = qc_rows(config)
    assert set(rows) == {(c, "lungs") for c in CASES} | {(c, "liver") for c in CASES[3:]}
    assert rows[("c3", "liver")]["flagged"] == "0"
    assert "implausible volume" in rows[("c5", "liver")]["reasons"]
    # c4's liver is empty though its lungs and bladder bracket it
    assert rows[("c4", "liver")]["expected_in_view"] == "1"
    assert "empty" in rows[("c4", "liver")]["reasons"]
    assert rows[("c4", "liver")]["volume_z"] == ""  # an empty mask's volume is not judged
    assert "folds disagree" in rows[("c2", "lungs")]["reasons"]
    assert all(rows[(c, "lungs")]["flagged"] == "0" for c in CASES if c != "c2")
    # the lungs' top level has nothing above it in these scans: never "expected"
    assert rows[("c0", "lungs")]["expected_in_view"] == "0"
    run = RunLayout.of(config)
    flags = json.loads(Path(run.qc_file("flags.json")).read_text())
    assert set(flags) == set(CASES) and set(flags["c5"]) == {"liver"} and flags["c0"] == {}
    with open(run.qc_file("summary.csv")) as f:
        summary = {(r["organ"], r["source"]): r for r in csv.DictReader(f)}
    assert summary[("liver", "src_a")]["flagged"] == "1"  # c5 (c3 is fine)
    assert summary[("liver", "src_a")]["masks"] == "2"
    assert {r["collapsed_folds"] for r in summary.values()} == {""}  # no per-fold counts
    for organ in ("liver", "lungs"):
        assert Path(run.qc_file(f"sheets/{organ}.png")).read_bytes()[:4] == b"\x89PNG"
    # the report's QC section: summary.csv row for row, each organ's sheet shown
    from orgseg.evaluation.tables import html_table, markdown
    from orgseg.pipeline.pseudo_qc import qc_table

    section = qc_table(config)
    assert section is not None and section.title == "Pseudo-label quality control"
    text = markdown(section)
    for row in summary.values():
        assert "| " + " | ".join(row.values()) + " |" in text, row
    page = html_table(section)
    for organ in ("liver", "lungs"):
        assert f"src='../qc/sheets/{organ}.png'" in page


@pytest.mark.parametrize("exclude", [True, False])
def test_a_collapsed_fold_is_reported_and_left_out_of_the_agreement(tmp_path, caplog, exclude):
    import dataclasses

    from orgseg.pipeline.pseudo_qc import assess, summary_lines

    config = build_run(tmp_path)
    qc = dataclasses.replace(config.pseudo_labels.qc, exclude_collapsed_folds=exclude)
    config = dataclasses.replace(
        config, pseudo_labels=dataclasses.replace(config.pseudo_labels, qc=qc)
    )
    layout = RunLayout.of(config)
    for i, case_id in enumerate(CASES):  # the lungs ensemble's fold 1 found nothing
        url = layout.pseudo_record(case_id, "lungs")
        record = json.loads(Path(url).read_text())
        record["qc"].update(fold_voxels=[400 + i, 0], fold_overlaps=[0], fold_agreement=0.0)
        write_bytes(url, json.dumps(record).encode())
    with caplog.at_level(logging.WARNING, logger="orgseg.pipeline.pseudo_qc"):
        run_qc(config)
    assert "lungs's ensemble fold 1 predicts (nearly) nothing in 6 of 6" in caplog.text
    rows = qc_rows(config)
    for c in CASES:
        lungs = rows[(c, "lungs")]
        if exclude:  # one fold left: no agreement to judge, the other figures pass
            assert lungs["fold_agreement"] == "" and lungs["flagged"] == "0", lungs
        else:
            assert lungs["flagged"] == "1"
            assert "folds disagree (mean pairwise Dice 0.000; fold 1 predicts nothing in " \
                "6/6 cases)" in lungs["reasons"]  # fmt: skip
    # the livers (one fold each here) are judged as before
    assert rows[("c3", "liver")]["flagged"] == "0"
    assert "implausible volume" in rows[("c5", "liver")]["reasons"]
    with open(layout.qc_file("summary.csv")) as f:
        summary = {(r["organ"], r["source"]): r["collapsed_folds"] for r in csv.DictReader(f)}
    assert summary[("lungs", "src_a")] == "fold 1 predicts nothing in 6/6 cases"
    assert summary[("liver", "src_a")] == ""
    lungs = next(line for line in summary_lines(assess(config)) if "lungs" in line)
    assert "fold 1 predicts nothing in 6/6 cases: retrain it" in lungs


def test_folds_that_all_but_miss_the_organ_are_flagged_not_forgiven(tmp_path, caplog):
    config = build_run(tmp_path)
    layout = RunLayout.of(config)
    for case_id in CASES:  # fold 0 found a few voxels, fold 1 none: the masks are empty
        url = layout.pseudo_record(case_id, "lungs")
        record = json.loads(Path(url).read_text())
        record["qc"].update(
            fold_voxels=[4, 0], fold_overlaps=[0], fold_agreement=0.0, volume_ml=0.2
        )
        write_bytes(url, json.dumps(record).encode())
    with caplog.at_level(logging.WARNING, logger="orgseg.pipeline.pseudo_qc"):
        run_qc(config)
    assert "predicts (nearly) nothing" not in caplog.text
    rows = qc_rows(config)
    for c in CASES:
        assert rows[(c, "lungs")]["reasons"].startswith("folds disagree (mean pairwise Dice 0.000)")


def test_a_review_overrules_qc_and_a_rerun_of_fusion_follows_it(tmp_path):
    review = tmp_path / "review.csv"
    review.write_text("case,organ,decision\nc2,lungs,accept\nc3,liver,reject  # leaks\n")
    config = build_run(tmp_path, review=str(review))
    run_qc(config)
    doubted = untrusted_masks(config)
    assert set(doubted) == {"c3", "c4", "c5"}
    assert doubted["c3"] == {"liver": ["rejected by review"]}
    assert qc_rows(config)[("c2", "lungs")]["trusted"] == "1"
    assert run_fusion_shard(config) == 6
    assert run_fusion_shard(config) == 0  # committed, nothing changed
    review.write_text("c3,liver,accept\nc2,lungs,accept\n")
    assert run_fusion_shard(config) == 1  # only c3's decision changed
    assert fused_records(config, ["c3"])["c3"]["untrusted"] == []


def test_fusion_policies_ignore_drop_case_and_keep(tmp_path):
    layout_of = {}
    for policy in ("ignore", "drop-case", "keep"):
        config = build_run(tmp_path / policy, untrusted=policy)
        run_qc(config)
        run_fusion_shard(config)
        layout_of[policy] = (config, fused_records(config, CASES))
    config, ignore = layout_of["ignore"]
    layout = RunLayout.of(config)
    assert ignore_id(config) == 3
    # c5's huge liver: no liver label, its voxels (and a margin) ignored, lungs kept
    c5 = np.asarray(read_volume(layout.fused("c5")).array)
    assert not np.any(c5 == 1) and np.all(c5[box(LIVER, grow=4) & ~box(LUNGS)] == 3)
    assert np.all(c5[box(LUNGS)] == 2) and ignore["c5"]["ignored_voxels"] > box(LIVER, 4).sum()
    # c4's liver is flagged empty: nowhere to put the ignore label, so it is left out
    assert ignore["c4"]["dropped"] and "not locatable" in ignore["c4"]["dropped"]
    # c2's disagreeing lungs are ignored; its manual liver is untouched
    c2 = np.asarray(read_volume(layout.fused("c2")).array)
    assert not np.any(c2 == 2) and np.any(c2 == 1) and np.any(c2 == 3)
    _, drop = layout_of["drop-case"]
    assert {c for c, r in drop.items() if r["dropped"]} == {"c2", "c4", "c5"}
    _, keep = layout_of["keep"]
    assert not any(r["dropped"] for r in keep.values())
    assert all(r["untrusted"] == [] for r in keep.values())
    c5_keep = np.asarray(read_volume(RunLayout.of(layout_of["keep"][0]).fused("c5")).array)
    assert set(np.unique(c5_keep)) == {0, 1, 2}


@pytest.mark.slow
@pytest.mark.nnunet
def test_the_ignore_label_reaches_nnunets_dataset(tmp_path):
    from orgseg.pipeline.strategy2 import build_strategy2_dataset

    config = build_run(tmp_path)
    config = dataclasses.replace(
        config,
        split=dataclasses.replace(config.split, n_folds=2),
        strategy1_training=dataclasses.replace(config.strategy1_training, folds=(0,)),
        strategy2_training=dataclasses.replace(config.strategy2_training, folds=(0,)),
        nnunet=dataclasses.replace(config.nnunet, features_scale=0.25, num_processes=1),
    )
    run_qc(config)
    run_fusion_shard(config)
    build_strategy2_dataset(config)
    raw = RunLayout.of(config).nnunet.raw
    (folder,) = [p for p in raw.iterdir() if p.is_dir()]
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "liver": 1, "lungs": 2, "ignore": 3}
    assert dataset["numTraining"] == 5  # c4 left out
    assert not list(folder.glob("labelsTr/c4*"))


def test_a_bad_review_line_says_where_and_what_was_expected():
    with pytest.raises(ConfigError, match="line 2: expected 'case,organ,accept|reject'"):
        parse_review("c1,liver,accept\nc2,liver,maybe\n")
    with pytest.raises(ConfigError, match="unknown organ 'livre'"):
        parse_review("c1,livre,reject\n")
    assert parse_review("# decisions\nc1,liver,Reject\n") == {("c1", "liver"): "reject"}


def test_a_policy_that_leaves_too_few_cases_says_so_and_what_to_do(tmp_path):
    from orgseg.pipeline.strategy2 import build_strategy2_dataset

    config = build_run(tmp_path, untrusted="drop-case")  # drops 3 of 6, 5 folds
    run_qc(config)
    run_fusion_shard(config)
    with pytest.raises(ConfigError, match="left 3 of 6 training cases.*pseudo_labels.review"):
        build_strategy2_dataset(config)
