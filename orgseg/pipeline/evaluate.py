"""Prediction of the held-out test cases with both strategies, and their evaluation."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import numpy as np

from orgseg.catalog import label_ids
from orgseg.config import RunConfig
from orgseg.core.crop import crop, uncrop
from orgseg.core.fusion import fuse_by_priority
from orgseg.core.orientation import Reorientation, to_canonical
from orgseg.core.splits import shard_of
from orgseg.core.volume import Volume
from orgseg.evaluation.chunking import CHUNKING_COLUMNS, chunking_rows, chunking_table
from orgseg.evaluation.cv import cv_rows, cv_table, read_fold_cases
from orgseg.evaluation.inputs import CaseInfo, CaseLabels
from orgseg.evaluation.report import write_report
from orgseg.evaluation.scoring import Scores, score_case
from orgseg.evaluation.tables import Table, to_csv
from orgseg.inference.engine import segment_volume
from orgseg.inference.model import SegmentationModel
from orgseg.inference.options import DEFAULTS
from orgseg.io import exists, join_url, load_ct, read_bytes, read_volume, save_like, write_bytes
from orgseg.io.storage import local_copy, names_in
from orgseg.nnunet.train import model_folder_url
from orgseg.pipeline.cases import CaseRecord, Manifest, load_manifest, load_manual_masks
from orgseg.pipeline.datasets import strategy1_dataset, strategy2_dataset
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.organ_masks import (
    CaseCache,
    MaskTargets,
    case_cache,
    missing_masks,
    model_options,
    predict_organ_masks,
    run_engine_options,
)
from orgseg.pipeline.staging import nnunet_root
from orgseg.pipeline.strategy1 import configuration_name

log = logging.getLogger(__name__)


def _chunking_url(config: RunConfig, case_id: str) -> str:
    return RunLayout.of(config).evaluation_file("chunking", f"{case_id}.json")


def predict_test_shard(config: RunConfig, shard: int = 0, n_shards: int = 1) -> int:
    """Job ``test-predictions``, one shard of the held-out cases: label maps (catalog ids,
    the input's geometry) of both strategies, through the same streamed engine, each CT
    read and body-contoured once. Each strategy sees what it was trained for: strategy 2
    the whole CT (as ``orgseg segment`` runs the exported model), strategy 1's organ
    models the case's body-cropped CT (as their training cases and the pseudo-labels);
    their organ masks are committed one by one (``predictions/strategy1-organs/<case>/``,
    cropped grid), then fused by CV Dice and put back on the whole grid. A shard killed
    mid-way resumes at its first uncommitted mask. The shard that
    holds the first ``evaluation.chunking_cases`` test cases also writes their chunking
    rows. Returns how many label maps it wrote."""
    layout = RunLayout.of(config)
    manifest = load_manifest(config)
    cases = shard_of(manifest.test, shard, n_shards)
    engine = run_engine_options(config)
    done = {s: names_in(layout.predictions_dir(s)) for s in (1, 2)}

    def todo(strategy: int) -> list[str]:
        return [
            c
            for c in cases
            if layout.prediction(strategy, c).rsplit("/", 1)[-1] not in done[strategy]
        ]

    chunk_cases = [c for c in manifest.test[: config.evaluation.chunking_cases] if c in cases]
    chunk_cases = [c for c in chunk_cases if not exists(_chunking_url(config, c))]
    todo2, todo1 = todo(2), todo(1)
    organs_todo = missing_masks(config.strategy1_organs, todo1, layout.organ_predictions_dir)
    log.info(
        "test-predictions shard %d/%d: %d strategy-2 maps, %d strategy-1 organ masks, "
        "%d strategy-1 maps", shard + 1, n_shards, len(todo2),
        sum(len(v) for v in organs_todo.values()), len(todo1),
    )  # fmt: skip

    def read(case_id: str):  # noqa: ANN202
        case = manifest.case(case_id)
        return load_ct(case.image_url, series_uid=case.series_uid)

    def read_cropped(case_id: str):  # noqa: ANN202
        return read_volume(layout.cropped_ct(case_id)), None

    written = 0
    with (
        case_cache(read, body_crop=engine.body_crop) as cache,
        case_cache(read_cropped, body_crop=engine.body_crop) as cropped,
    ):
        if todo2 or chunk_cases:
            with local_copy(layout.model(2)) as model_dir:  # staged once when remote
                model = SegmentationModel(model_dir, model_options(config, None))
            for case_id in todo2:
                ct, cached = cache.get(case_id)
                seg = segment_volume(model, ct, engine, body=cached.body)
                save_like(seg.labels, cached.extra, layout.prediction(2, case_id))  # type: ignore[arg-type]
                written += 1
                log.info("strategy 2: %s (%s, %.1f s)", case_id, seg.mode, seg.seconds)
            for case_id in chunk_cases:
                _write_chunking_rows(config, model, case_id, cache.get(case_id)[0])
            del model
        predict_organ_masks(
            config,
            organs_todo,
            cropped,
            MaskTargets(mask=layout.organ_prediction, record=layout.organ_prediction_record),
            what="strategy-1 test masks",
        )
        if todo1:
            cv_dice = json.loads(read_bytes(layout.cv_dice(1)))
            ids = label_ids(config.strategy1_organs)
        for case_id in todo1:
            masks = {
                o: np.asarray(read_volume(layout.organ_prediction(case_id, o)).array) > 0
                for o in config.strategy1_organs
            }
            fused = fuse_by_priority(masks, ids, manual=(), cv_dice=cv_dice)
            del masks
            whole = uncrop(fused, manifest.case(case_id).crop_box)
            save_like(
                whole, _reorientation(manifest.case(case_id), cache), layout.prediction(1, case_id)
            )
            written += 1
            log.info("strategy 1: %s", case_id)
    return written


def _reorientation(case: CaseRecord, cache: CaseCache) -> Reorientation:
    """The way back to the case's file frame: from the CT this shard read, else read now."""
    hit = cache.cached(case.case_id)
    if hit is not None:
        return hit.extra  # type: ignore[return-value]
    return load_ct(case.image_url, series_uid=case.series_uid)[1]


def _write_chunking_rows(
    config: RunConfig, model: SegmentationModel, case_id: str, ct: Volume
) -> None:
    """Chunked vs unchunked strategy-2 label maps of one test case (the report's table)."""
    ev = config.evaluation
    rows = chunking_rows(
        model,
        {case_id: ct},
        model.labels,
        chunk_mm=ev.chunking_chunk_mm or config.inference.chunk_mm or DEFAULTS.chunk_mm,
        overlaps_mm=ev.chunking_overlaps_mm,
    )
    write_bytes(_chunking_url(config, case_id), json.dumps(rows).encode())


def _references(config: RunConfig, case: CaseRecord) -> Mapping[str, np.ndarray]:
    """Reference masks on the case's cropped canonical grid."""
    layout = RunLayout.of(config)
    if config.evaluation.ground_truth_dir:
        url = join_url(config.evaluation.ground_truth_dir, f"{case.case_id}.nii.gz")
        truth, _ = to_canonical(read_volume(url))
        arr = np.asarray(crop(np.asarray(truth.array), case.crop_box))
        ids = label_ids(config.strategy1_organs)
        return {o: arr == ids[o] for o in config.strategy1_organs}
    return dict(load_manual_masks(layout, case.case_id))


def _grid(shape: tuple[int, ...], spacing_mm: tuple[float, float, float]) -> Volume:
    """A grid description without memory: the masks compared are already on one grid."""
    return Volume(np.broadcast_to(np.zeros((), bool), shape), spacing_mm=spacing_mm)


def score_test_cases(config: RunConfig, manifest: Manifest) -> Scores:
    """Both strategies' held-out predictions against the references, per case and organ."""
    layout = RunLayout.of(config)
    scores = Scores(missing={"strategy1": [], "strategy2": []})
    for case_id in manifest.test:
        case = manifest.case(case_id)
        refs = _references(config, case)  # read once, shared by both strategies
        if not refs:
            continue
        shape = next(iter(refs.values())).shape
        ref = CaseLabels(dict(refs), _grid(shape, case.spacing_mm))
        info = CaseInfo(source=case.source, size_group=case.size_group)
        for strategy, organs in ((1, config.strategy1_organs), (2, config.strategy2_organs)):
            pred_vol, _ = to_canonical(read_volume(layout.prediction(strategy, case_id)))
            pred_crop = np.asarray(crop(np.asarray(pred_vol.array), case.crop_box))
            ids = label_ids(organs)
            pred = CaseLabels(
                {o: pred_crop == ids[o] for o in organs}, _grid(pred_crop.shape, case.spacing_mm)
            )
            scores.rows += score_case(f"strategy{strategy}", case_id, info, pred, ref)
    return scores


def evaluate_test_cases(config: RunConfig) -> dict[str, dict[str, dict[str, float | None]]]:
    """Stage ``evaluate``: the report under ``<run>/evaluation/`` (tables per source and
    size group, tests, plots, CV and chunking tables); returns per strategy, per organ:
    mean Dice and n over the test cases (also ``evaluation/summary.json``)."""
    layout = RunLayout.of(config)
    manifest = load_manifest(config)
    scores = score_test_cases(config, manifest)
    extra = [cv_table(cv_report_rows(config))]
    chunking = run_chunking_check(config, manifest)
    if chunking is not None:
        extra.append(chunking)
    from orgseg.pipeline.pseudo_qc import qc_table

    qc = qc_table(config)
    if qc is not None:
        extra.append(qc)
    out = layout.evaluation_dir
    files = write_report(
        out,
        scores,
        group_by=config.evaluation.group_by,
        title="orgseg run report: held-out test cases",
        pairs=[("strategy1", "strategy2")],
        extra_tables=extra,
    )
    results: dict[str, dict[str, dict[str, float | None]]] = {"strategy1": {}, "strategy2": {}}
    for s in files.summary:
        if s["group"] == "all":
            results[str(s["model"])][str(s["organ"])] = {
                "dice": s["dice_mean"],  # type: ignore[dict-item]
                "n": s["n"],  # type: ignore[dict-item]
            }
    write_bytes(join_url(out, "summary.json"), json.dumps(results, indent=2).encode())
    return results


def cv_report_rows(config: RunConfig) -> list[dict[str, object]]:
    """Cross-validation rows of both strategies from nnU-Net's fold validation files."""
    conf = configuration_name(config)
    root = nnunet_root(config)  # read where committed: nothing of nnU-Net's to stage
    folders = {
        "strategy1": [
            model_folder_url(root, strategy1_dataset(config, o)[1], conf)
            for o in config.strategy1_organs
        ],
        "strategy2": [model_folder_url(root, strategy2_dataset(config)[1], conf)],
    }
    return cv_rows(
        {
            name: [c for folder in paths for c in read_fold_cases(str(folder))]
            for name, paths in folders.items()
        }
    )


def run_chunking_check(config: RunConfig, manifest: Manifest) -> Table | None:
    """The chunking table from the rows the test-prediction shards wrote."""
    ev = config.evaluation
    case_ids = list(manifest.test)[: ev.chunking_cases]
    urls = {c: _chunking_url(config, c) for c in case_ids}
    present = {c: u for c, u in urls.items() if exists(u)}
    rows = [r for u in present.values() for r in json.loads(read_bytes(u))]
    missing = [c for c in case_ids if c not in present]
    if missing:
        log.warning("chunking table: no rows for %s (job test-predictions writes them)", missing)
    if not rows:
        return None
    chunk_mm = ev.chunking_chunk_mm or config.inference.chunk_mm or DEFAULTS.chunk_mm
    write_bytes(
        RunLayout.of(config).evaluation_file("chunking.csv"),
        to_csv(rows, CHUNKING_COLUMNS).encode(),
    )
    return chunking_table(rows, chunk_mm=chunk_mm)


def format_dice_table(
    results: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    cv: Mapping[str, float] | None = None,
) -> str:
    """A Markdown table: organ | strategy-1 Dice | strategy-2 Dice (| CV Dice)."""
    organs = sorted(set(results.get("strategy1", {})) | set(results.get("strategy2", {})))
    head = "| organ | strategy 1 Dice | strategy 2 Dice | n |" + (" s1 CV Dice |" if cv else "")
    lines = [head, "|---|---|---|---|" + ("---|" if cv else "")]

    def cell(strategy: str, organ: str) -> str:
        r = results.get(strategy, {}).get(organ)
        return f"{r['dice']:.3f}" if r else "-"

    for organ in organs:
        n = (results.get("strategy2", {}).get(organ) or results["strategy1"].get(organ) or {}).get(
            "n", 0
        )
        row = f"| {organ} | {cell('strategy1', organ)} | {cell('strategy2', organ)} | {n} |"
        if cv:
            row += f" {cv.get(organ, float('nan')):.3f} |"
        lines.append(row)
    return "\n".join(lines)


def write_run_report(config: RunConfig) -> None:
    """The run's report: the full evaluation under ``<run>/evaluation/`` (report.html),
    and ``<run>/report.md``: held-out Dice per organ with strategy-1 CV Dice."""
    results = evaluate_test_cases(config)
    layout = RunLayout.of(config)
    cv = json.loads(read_bytes(layout.cv_dice(1)))
    text = "# orgseg run report\n\nHeld-out test cases, Dice per organ (mean over cases).\n\n"
    text += format_dice_table(results, cv) + "\n\n"
    text += "Full report (per source and size group, tests, plots, cross-validation and "
    text += "chunking tables): evaluation/report.html\n"
    write_bytes(layout.report, text.encode())
