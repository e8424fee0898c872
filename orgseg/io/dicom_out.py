"""DICOM outputs for a DICOM input series: DICOM SEG (highdicom) and RTSTRUCT (rt-utils).

Both reference the input series, so a viewer or treatment-planning system shows them on
the original images. Frames follow the series' slices sorted along the slice normal, the
order SimpleITK (our reader) and rt-utils both use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np

from orgseg.core.orientation import Reorientation, from_canonical
from orgseg.errors import DataContractError
from orgseg.io.storage import atomic_local_path, join_url, local_copy
from orgseg.io.volumes import looks_like_dicom

log = logging.getLogger(__name__)

# organ name -> pydicom's SNOMED CT code attribute (codes.SCT.<name>); others: "Organ"
_SCT_NAMES = {
    "adrenal_glands": "AdrenalGland",
    "femoral_heads": "HeadOfFemur",
    "kidneys": "Kidney",
    "lungs": "Lung",
    "ribs": "Rib",
    "vertebrae": "Vertebra",
    "small_bowel": "SmallIntestine",
    "eyeballs": "EyeProper",
    "clavicles": "Clavicle",
    "hips": "HipBone",
    "spinal_cord": "SpinalCord",
}


def organ_code(organ: str):
    from pydicom.sr.codedict import codes

    name = _SCT_NAMES.get(organ, "".join(p.capitalize() for p in organ.split("_")))
    try:
        return getattr(codes.SCT, name)
    except AttributeError:
        return codes.SCT.Organ


def _series_files(folder: str) -> list[str]:
    import pydicom

    files = []
    for root, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(root, n)
            if n.lower().endswith(".dcm") or looks_like_dicom(path):
                files.append(path)
    if not files:
        raise DataContractError(f"{folder}: no DICOM files for the DICOM outputs")

    def position(path: str) -> float:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        row, col = (
            np.asarray(ds.ImageOrientationPatient[:3], float),
            np.asarray(ds.ImageOrientationPatient[3:], float),
        )
        return float(np.dot(np.cross(row, col), np.asarray(ds.ImagePositionPatient, float)))

    return sorted(files, key=position)


def write_dicom_outputs(
    case_url: str,
    output_types: Sequence[str],
    *,
    labels: np.ndarray,
    reorientation: Reorientation,
    label_ids: Mapping[str, int],
    dicom_url: str | None,
) -> list[str]:
    """Write ``seg.dcm`` and/or ``rtstruct.dcm`` under ``case_url``; return their URLs."""
    if dicom_url is None:
        log.warning("%s: DICOM outputs %s need a DICOM input; skipped", case_url, output_types)
        return []
    file_order = np.asarray(from_canonical(labels, reorientation).array)  # (slice, row, col)
    present = {o: i for o, i in label_ids.items() if np.any(file_order == i)}
    written: list[str] = []
    with local_copy(dicom_url) as folder:
        files = _series_files(folder)
        if len(files) != file_order.shape[0]:
            raise DataContractError(
                f"{dicom_url}: the series has {len(files)} slices but the label map has "
                f"{file_order.shape[0]}; pass the single series that was segmented"
            )
        if "dicom_seg" in output_types and not present:
            log.warning("%s: no organ found; a DICOM SEG needs a segment, none written", case_url)
        elif "dicom_seg" in output_types:
            url = join_url(case_url, "seg.dcm")
            _write_seg(url, files, file_order, present)
            written.append(url)
        if "rtstruct" in output_types:
            url = join_url(case_url, "rtstruct.dcm")
            _write_rtstruct(url, folder, file_order, present)
            written.append(url)
    return written


def _write_seg(url: str, files: list[str], labels: np.ndarray, present: Mapping[str, int]):
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from orgseg import __version__

    sources = [pydicom.dcmread(f) for f in files]
    for ds in sources:  # some exporters keep the SOP class in the file meta only
        if not ds.get("SOPClassUID") and "MediaStorageSOPClassUID" in ds.file_meta:
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    algorithm = hd.AlgorithmIdentificationSequence(
        name="orgseg", family=codes.cid7162.ArtificialIntelligence, version=__version__
    )
    organs = sorted(present, key=lambda o: present[o])
    segment_map = np.zeros(int(labels.max(initial=0)) + 1, np.uint8)
    descriptions = []
    for number, organ in enumerate(organs, start=1):
        segment_map[present[organ]] = number
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=organ,
                segmented_property_category=codes.SCT.Organ,
                segmented_property_type=organ_code(organ),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=segment_map[labels],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="orgseg",
        manufacturer_model_name="orgseg",
        software_versions=__version__,
        device_serial_number="0",
        series_description="orgseg organs",
    )
    with atomic_local_path(url) as tmp:
        seg.save_as(tmp)


def _write_rtstruct(url: str, folder: str, labels: np.ndarray, present: Mapping[str, int]):
    from rt_utils import RTStructBuilder

    rtstruct = RTStructBuilder.create_new(dicom_series_path=folder)
    for organ, lid in sorted(present.items(), key=lambda kv: kv[1]):
        rtstruct.add_roi(mask=np.transpose(labels == lid, (1, 2, 0)), name=organ)
    with atomic_local_path(url) as tmp:
        rtstruct.save(tmp)
