"""Small replicas of the public datasets' release layouts, for tests (a fake of the
releases: the real folder and file names, dtypes and orientation quirks, tiny volumes).

Every case is one tiny CT (a soft-tissue cylinder in air) with organ *parts* planted as
small blocks, each part with its own HU value and its own label value or label file. A
builder returns, per case, which HU values (and how many voxels of each) every organ's
manual mask must cover once the case is read, so a test can check that each mask lands
on exactly its organ's voxels of its image, whatever the file's orientation.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from orgseg.core.volume import CANONICAL_DIRECTION, Volume

#: the canonical grid of every replica CT: z inferior->superior, y anterior->posterior,
#: x right->left; 40 rows x 32 columns, so a row/column swap cannot go unnoticed
SHAPE = (16, 40, 32)
SPACING_MM = (2.5, 2.0, 2.0)
ORIGIN_MM = (-31.0, -40.0, -20.0)
PART = (2, 3, 3)
#: block corners (z, y, x) inside the cylinder, 4 voxels apart
SLOTS = [(z, y, x) for z in (2, 10) for y in (10, 14, 18, 22, 26) for x in (8, 12, 16, 20)]
#: slices 5-6 hold the ring-shaped RTSTRUCT ROI (a contour with a hole)
RING_Z = (5, 6)


@dataclass(frozen=True)
class Part:
    """One planted block: where, its HU, and its label value or label file name."""

    slot: int
    hu: int
    tag: object


@dataclass
class Replica:
    """What a builder wrote: the source's folder and each case's expected masks."""

    folder: Path
    #: case id -> organ -> Counter(HU -> voxels) the manual mask must cover
    expected: dict[str, dict[str, Counter]] = field(default_factory=dict)
    #: case ids the release ships without labels (skipped, not excluded)
    unlabelled: set[str] = field(default_factory=set)
    #: case id -> a word the exclusion reason must contain
    broken: dict[str, str] = field(default_factory=dict)
    #: test cases of the official split
    official_test: set[str] = field(default_factory=set)


def _blank() -> np.ndarray:
    z, y, x = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    ct = np.full(SHAPE, -1000, np.int16)
    ct[(y - 20) ** 2 + (x - 16) ** 2 <= 14**2] = 40
    return ct


def _block(slot: int) -> tuple[slice, slice, slice]:
    z, y, x = SLOTS[slot]
    return (slice(z, z + PART[0]), slice(y, y + PART[1]), slice(x, x + PART[2]))


def phantom(parts: Sequence[Part]) -> tuple[np.ndarray, dict[object, np.ndarray]]:
    """The canonical CT and, per tag, the canonical mask of its parts."""
    ct = _blank()
    masks: dict[object, np.ndarray] = {}
    for p in parts:
        ct[_block(p.slot)] = p.hu
        m = masks.setdefault(p.tag, np.zeros(SHAPE, bool))
        m[_block(p.slot)] = True
    return ct, masks


def expected_of(parts: Sequence[Part], mapping: Mapping[str, Iterable[object]]) -> dict:
    """organ -> Counter(HU -> voxels) from the parts whose tag the organ's mapping holds."""
    n = int(np.prod(PART))
    out = {}
    for organ, tags in mapping.items():
        tags = set(tags)
        out[organ] = Counter({p.hu: n for p in parts if p.tag in tags})
    return out


def canonical_volume(array: np.ndarray) -> Volume:
    return Volume(array, spacing_mm=SPACING_MM, origin_mm=ORIGIN_MM, direction=CANONICAL_DIRECTION)


def reorient(volume: Volume, perm: Sequence[int], flips: Sequence[bool]) -> Volume:
    """The same physical image stored another way: array axis n is old axis perm[n],
    reversed where flips[n] (origin and direction follow, so world positions do not)."""
    array = np.transpose(volume.array, perm)
    spacing = [volume.spacing_mm[p] for p in perm]
    direction = np.array([volume.direction[p] for p in perm], float)
    origin = np.array(volume.origin_mm, float)
    for n, flip in enumerate(flips):
        if flip:
            origin = origin + (array.shape[n] - 1) * spacing[n] * direction[n]
            direction[n] = -direction[n]
            array = np.flip(array, axis=n)
    return Volume(
        np.ascontiguousarray(array),
        spacing_mm=tuple(spacing),
        origin_mm=tuple(origin),
        direction=direction,
    )


def nifti_affine(volume: Volume) -> np.ndarray:
    """The RAS affine of a volume written as NIfTI data ``transpose(array, (2, 1, 0))``."""
    aff = np.eye(4)
    lps_to_ras = np.array([-1.0, -1.0, 1.0])
    for c in range(3):  # file axis c (i, j, k) is volume axis 2 - c
        aff[:3, c] = volume.direction[2 - c] * volume.spacing_mm[2 - c] * lps_to_ras
    aff[:3, 3] = np.asarray(volume.origin_mm) * lps_to_ras
    return aff


def write_nifti(path: Path, volume: Volume, *, dtype, sform_only: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.transpose(np.asarray(volume.array), (2, 1, 0)).astype(dtype)
    image = nib.Nifti1Image(data, nifti_affine(volume))
    if sform_only:
        image.set_qform(None, code=0)
        image.set_sform(nifti_affine(volume), code=1)
    nib.save(image, str(path))


def write_pair(
    image: Path,
    label: Path | None,
    parts: Sequence[Part],
    *,
    perm=(0, 1, 2),
    flips=(False, False, False),
    image_dtype=np.int16,
    label_dtype=np.uint8,
    sform_only: bool = False,
) -> None:
    """A CT and its label map (tags are label values), stored as perm/flips say."""
    ct, masks = phantom(parts)
    write_nifti(
        image, reorient(canonical_volume(ct), perm, flips), dtype=image_dtype, sform_only=sform_only
    )
    if label is None:
        return
    lm = np.zeros(SHAPE, np.int32)
    for tag, m in masks.items():
        lm[m] = int(tag)  # type: ignore[call-overload]
    write_nifti(
        label, reorient(canonical_volume(lm), perm, flips), dtype=label_dtype, sform_only=sform_only
    )


def write_per_organ(
    image: Path,
    seg_dir: Path,
    parts: Sequence[Part],
    file_names: Iterable[str],
    *,
    perm=(0, 1, 2),
    flips=(False, False, False),
) -> None:
    """A CT and one binary file per name (tags are file names; others all-zero)."""
    ct, masks = phantom(parts)
    write_nifti(image, reorient(canonical_volume(ct), perm, flips), dtype=np.int16)
    for name in file_names:
        m = masks.get(name, np.zeros(SHAPE, bool))
        write_nifti(
            seg_dir / name,
            reorient(canonical_volume(m.astype(np.uint8)), perm, flips),
            dtype=np.uint8,
        )


def parts_for(tags: Sequence[object], *, start: int = 0, hu0: int = 100) -> list[Part]:
    """One part per tag, in consecutive slots, each with its own HU."""
    return [Part(slot=start + i, hu=hu0 + 10 * (start + i), tag=t) for i, t in enumerate(tags)]


def appledouble(path: Path) -> None:
    """A macOS AppleDouble file as tarballs made on a Mac ship them (not an image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000))


# --- the releases --------------------------------------------------------------------


def totalsegmentator(root: Path, registry) -> Replica:
    """Totalsegmentator_dataset_v201: sXXXX/ct.nii.gz, segmentations/<117 files>, meta.csv."""
    from orgseg.sources.totalseg import TOTAL_CLASSES

    src = registry["totalsegmentator"]
    rep = Replica(folder=root / "Totalsegmentator_dataset_v201")
    names = [f"{n}.nii.gz" for n in TOTAL_CLASSES.values()]
    planted = [
        "liver.nii.gz",
        "spleen.nii.gz",
        "kidney_left.nii.gz",
        "kidney_right.nii.gz",
        "lung_upper_lobe_left.nii.gz",
        "vertebrae_L1.nii.gz",
        "vertebrae_T12.nii.gz",
        "rib_left_3.nii.gz",
        "heart.nii.gz",
    ]
    rows = ["image_id;age;gender;split"]
    for k, (case, split) in enumerate((("s0011", "train"), ("s0042", "val"), ("s1201", "test"))):
        parts = parts_for(planted[k:] + planted[:k], hu0=100 + k)
        write_per_organ(
            rep.folder / case / "ct.nii.gz",
            rep.folder / case / "segmentations",
            parts,
            names,
            perm=(0, 1, 2),
            flips=(k == 1, k == 1, False),
        )
        rep.expected[case] = expected_of(parts, src.files)
        rows.append(f"{case};{60 + k};f;{split}")
        if split == "test":
            rep.official_test.add(case)
    (rep.folder / "meta.csv").write_text("\n".join(rows) + "\n")
    return rep


def lits(root: Path, registry) -> Replica:
    """LiTS: 'Training Batch 1/2' with volume-N.nii / segmentation-N.nii, mixed orientation."""
    src = registry["lits"]
    rep = Replica(folder=root / "LiTS")
    for n, batch, flips in ((0, 1, (False, False, False)), (28, 2, (True, True, False))):
        parts = parts_for([1, 2, 1], hu0=300 + n)  # liver, tumour, liver
        d = rep.folder / f"Training Batch {batch}"
        write_pair(
            d / f"volume-{n}.nii",
            d / f"segmentation-{n}.nii",
            parts,
            flips=flips,
            perm=(0, 2, 1) if batch == 2 else (0, 1, 2),
        )
        rep.expected[f"lits_{n}"] = expected_of(parts, src.labels)
    # a broken pair: the segmentation is one slice short of its volume
    d = rep.folder / "Training Batch 2"
    ct, _ = phantom(parts_for([1]))
    write_nifti(d / "volume-29.nii", canonical_volume(ct), dtype=np.int16)
    write_nifti(
        d / "segmentation-29.nii", canonical_volume(np.zeros(SHAPE, np.uint8)[:-1]), dtype=np.uint8
    )
    rep.broken["lits_29"] = "grid"
    return rep


def kits19(root: Path, registry) -> Replica:
    """KiTS19: data/case_XXXXX/imaging.nii.gz (float32, slices first) + segmentation."""
    src = registry["kits19"]
    rep = Replica(folder=root / "kits19")
    for i in (0, 1):
        parts = parts_for([1, 2, 1], start=2 * i, hu0=200)
        d = rep.folder / "data" / f"case_{i:05d}"
        # slices first: file axis i runs along z (inferior), as KiTS19 stores it
        write_pair(
            d / "imaging.nii.gz",
            d / "segmentation.nii.gz",
            parts,
            perm=(2, 1, 0),
            flips=(False, False, True),
            image_dtype=np.float32,
        )
        rep.expected[f"case_{i:05d}"] = expected_of(parts, src.labels)
    d = rep.folder / "data" / "case_00210"  # the test cases ship without a segmentation
    write_pair(
        d / "imaging.nii.gz",
        None,
        parts_for([1]),
        perm=(2, 1, 0),
        flips=(False, False, True),
        image_dtype=np.float32,
    )
    rep.unlabelled.add("case_00210")
    return rep


def ct_org(root: Path, registry) -> Replica:
    """CT-ORG: OrganSegmentations/volume-N.nii.gz + labels-N.nii.gz (float32 labels)."""
    src = registry["ct_org"]
    rep = Replica(folder=root / "CT-ORG")
    d = rep.folder / "OrganSegmentations"
    # case 140 also holds a value (7) CT-ORG does not define: reported, not fatal
    for n, tags in ((0, [1, 2, 3, 4, 5]), (140, [1, 3, 4, 5, 6, 7])):
        parts = parts_for(tags, hu0=400)
        write_pair(
            d / f"volume-{n}.nii.gz", d / f"labels-{n}.nii.gz", parts, label_dtype=np.float32
        )
        exp = expected_of(parts, src.labels)
        if 6 not in tags:
            exp.pop("brain")  # CT-ORG labels the brain in its test cases only
        rep.expected[f"ctorg_{n}"] = exp
    # float labels that are no labels (interpolated): excluded
    parts = parts_for([1])
    ct, masks = phantom(parts)
    write_nifti(d / "volume-7.nii.gz", canonical_volume(ct), dtype=np.int16)
    write_nifti(
        d / "labels-7.nii.gz", canonical_volume(masks[1] * np.float32(0.5)), dtype=np.float32
    )
    rep.broken["ctorg_7"] = "integer"
    return rep


def msd(root: Path, registry, task: str, source: str, tags: Sequence[int]) -> Replica:
    """MSD TaskXX: imagesTr/labelsTr/imagesTs, dataset.json, macOS ._ files."""
    src = registry[source]
    rep = Replica(folder=root / task)
    prefix = task.split("_", 1)[1].lower()
    for i in (0, 3):
        parts = parts_for(list(tags), start=i, hu0=500)
        write_pair(
            rep.folder / "imagesTr" / f"{prefix}_{i}.nii.gz",
            rep.folder / "labelsTr" / f"{prefix}_{i}.nii.gz",
            parts,
        )
        appledouble(rep.folder / "imagesTr" / f"._{prefix}_{i}.nii.gz")
        appledouble(rep.folder / "labelsTr" / f"._{prefix}_{i}.nii.gz")
        rep.expected[f"{prefix}_{i}"] = expected_of(parts, src.labels)
    write_pair(rep.folder / "imagesTs" / f"{prefix}_9.nii.gz", None, parts_for([1]))
    (rep.folder / "dataset.json").write_text(json.dumps({"name": task, "numTraining": 2}))
    appledouble(rep.folder / "._dataset.json")
    return rep


def verse(root: Path, registry) -> Replica:
    """VerSe: <split>/rawdata/sub-X/sub-X[_...]_ct.nii.gz, derivatives/.../_seg-vert_msk
    (float64 labels, sform only, each scan its own orientation)."""
    src = registry["verse"]
    rep = Replica(folder=root / "verse")
    for split, sub, scan, perm, flips in (
        ("dataset-verse19training", "sub-verse004", "", (1, 0, 2), (True, False, False)),
        ("dataset-verse20training", "sub-gl003", "_dir-ax", (0, 1, 2), (False, False, True)),
    ):
        parts = parts_for([20, 21, 28, 26], hu0=600)  # L1, L2, T13, sacrum (not used)
        raw = rep.folder / split / "rawdata" / sub / f"{sub}{scan}_ct.nii.gz"
        seg = rep.folder / split / "derivatives" / sub / f"{sub}{scan}_seg-vert_msk.nii.gz"
        write_pair(raw, seg, parts, perm=perm, flips=flips, label_dtype=np.float64, sform_only=True)
        (seg.parent / f"{sub}{scan}_seg-subreg_ctd.json").write_text("[]")
        rep.expected[f"{sub}{scan}"] = expected_of(parts, src.labels)
    return rep


def abdomenatlas(root: Path, registry) -> Replica:
    """AbdomenAtlas: BDMAP_XXXXXXXX/ct.nii.gz + segmentations/<organ>.nii.gz (1.0 and 1.1)."""
    src = registry["abdomenatlas"]
    rep = Replica(folder=root / "AbdomenAtlas")
    v10 = [
        "aorta.nii.gz",
        "gall_bladder.nii.gz",
        "kidney_left.nii.gz",
        "kidney_right.nii.gz",
        "liver.nii.gz",
        "pancreas.nii.gz",
        "postcava.nii.gz",
        "spleen.nii.gz",
        "stomach.nii.gz",
    ]
    v11 = v10 + [
        "bladder.nii.gz",
        "colon.nii.gz",
        "lung_left.nii.gz",
        "lung_right.nii.gz",
        "intestine.nii.gz",
        "adrenal_gland_left.nii.gz",
    ]  # right adrenal missing
    for case, files in (("BDMAP_00000001", v10), ("BDMAP_00000002", v11)):
        parts = parts_for(files, hu0=150)
        d = rep.folder / case
        write_per_organ(d / "ct.nii.gz", d / "segmentations", parts, files)
        write_nifti(
            d / "combined_labels.nii.gz",
            canonical_volume(np.zeros(SHAPE, np.uint8)),
            dtype=np.uint8,
        )
        present = set(files)
        mapping = {o: f for o, f in src.files.items() if set(f) <= present}
        rep.expected[case] = expected_of(parts, mapping)
    return rep


def abdomenct_1k(root: Path, registry) -> Replica:
    """AbdomenCT-1K: Case_XXXXX_0000.nii.gz in an image folder, Mask/Case_XXXXX.nii.gz."""
    src = registry["abdomenct_1k"]
    rep = Replica(folder=root / "AbdomenCT-1K")
    for n in ("00001", "00522"):
        parts = parts_for([1, 2, 3, 4, 2], hu0=700)
        write_pair(
            rep.folder / "AbdomenCT-1K-ImagePart1" / f"Case_{n}_0000.nii.gz",
            rep.folder / "Mask" / f"Case_{n}.nii.gz",
            parts,
        )
        rep.expected[f"abdomenct1k_{n}"] = expected_of(parts, src.labels)
    return rep


def amos22(root: Path, registry) -> Replica:
    """AMOS22: imagesTr/Va + labelsTr/Va; ids 500 and above are MRI (not cases)."""
    src = registry["amos22"]
    rep = Replica(folder=root / "amos22")
    for split, n in (("Tr", "0001"), ("Va", "0008"), ("Tr", "0507")):
        parts = parts_for([1, 2, 3, 6, 9, 14], hu0=250)
        write_pair(
            rep.folder / f"images{split}" / f"amos_{n}.nii.gz",
            rep.folder / f"labels{split}" / f"amos_{n}.nii.gz",
            parts,
        )
        if int(n) < 500:
            rep.expected[f"amos_{n}"] = expected_of(parts, src.labels)
    write_pair(rep.folder / "imagesTs" / "amos_0002.nii.gz", None, parts_for([1]))
    return rep


# --- DICOM CT + RTSTRUCT (Pediatric-CT-SEG) --------------------------------------------

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def _dataset(path: Path, sop_class: str, **attrs):  # noqa: ANN202
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    # the patient/study module a DICOM writer (rt-utils, highdicom) copies from
    ds.PatientName = "Replica^Patient"
    ds.PatientBirthDate = "20100101"
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = "20200101"
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "orgseg tests"
    ds.SeriesNumber = 2
    ds.StudyDescription = ds.SeriesDescription = "replica"
    for k, v in attrs.items():
        setattr(ds, k, v)
    del pydicom  # imported for its side effects on FileDataset only
    return ds


def write_ct_series(folder: Path, ct: np.ndarray, *, uids: Mapping[str, str]) -> None:
    """A canonical CT as axial DICOM slices (rows = y, columns = x), one file a slice."""
    folder.mkdir(parents=True, exist_ok=True)
    for z in range(ct.shape[0]):
        ds = _dataset(
            folder / f"1-{z + 1:03d}.dcm",
            CT_STORAGE,
            Modality="CT",
            PatientID=uids["patient"],
            StudyInstanceUID=uids["study"],
            SeriesInstanceUID=uids["ct_series"],
            FrameOfReferenceUID=uids["frame"],
            InstanceNumber=z + 1,
            Rows=ct.shape[1],
            Columns=ct.shape[2],
            PixelSpacing=[SPACING_MM[1], SPACING_MM[2]],
            SliceThickness=SPACING_MM[0],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            ImagePositionPatient=[ORIGIN_MM[0], ORIGIN_MM[1], ORIGIN_MM[2] + z * SPACING_MM[0]],
            SamplesPerPixel=1,
            PhotometricInterpretation="MONOCHROME2",
            BitsAllocated=16,
            BitsStored=16,
            HighBit=15,
            PixelRepresentation=1,
            RescaleIntercept=-1024,
            RescaleSlope=1,
        )
        ds.PixelData = (ct[z].astype(np.int32) + 1024).astype(np.int16).tobytes()
        ds.save_as(str(folder / f"1-{z + 1:03d}.dcm"), enforce_file_format=True)


def _world(z: float, r: float, c: float) -> list[float]:
    return [
        ORIGIN_MM[0] + c * SPACING_MM[2],
        ORIGIN_MM[1] + r * SPACING_MM[1],
        ORIGIN_MM[2] + z * SPACING_MM[0],
    ]


def _rect(z: int, r0: float, c0: float, r1: float, c1: float) -> list[float]:
    """A closed planar contour through the centres of a rectangle's boundary voxels."""
    pts = [_world(z, r0, c0), _world(z, r0, c1), _world(z, r1, c1), _world(z, r1, c0)]
    return [v for p in pts for v in p]


def write_rtstruct(path: Path, rois: Mapping[str, list[list[float]]], *, uids) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as Seq

    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _dataset(
        path,
        RTSTRUCT_STORAGE,
        Modality="RTSTRUCT",
        PatientID=uids["patient"],
        StudyInstanceUID=uids["study"],
        SeriesInstanceUID=uids["rt_series"],
        StructureSetLabel="contours",
    )
    series = Dataset()
    series.SeriesInstanceUID = uids["ct_series"]
    study = Dataset()
    study.ReferencedSOPInstanceUID = uids["study"]
    study.RTReferencedSeriesSequence = Seq([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = uids["frame"]
    frame.RTReferencedStudySequence = Seq([study])
    ds.ReferencedFrameOfReferenceSequence = Seq([frame])
    roi_seq, contour_seq = [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        r = Dataset()
        r.ROINumber = number
        r.ROIName = name
        r.ReferencedFrameOfReferenceUID = uids["frame"]
        roi_seq.append(r)
        c = Dataset()
        c.ReferencedROINumber = number
        items = []
        for data in contours:
            item = Dataset()
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(data) // 3
            item.ContourData = [round(v, 4) for v in data]
            items.append(item)
        c.ContourSequence = Seq(items)
        contour_seq.append(c)
    ds.StructureSetROISequence = Seq(roi_seq)
    ds.ROIContourSequence = Seq(contour_seq)
    ds.save_as(str(path), enforce_file_format=True)


def pediatric_ct_seg(root: Path, registry) -> Replica:
    """Pediatric-CT-SEG as TCIA's downloader lays it out: patient/study/series folders,
    the CT in one series folder and the RTSTRUCT in another, ROI names as shipped."""
    from pydicom.uid import generate_uid

    rep = Replica(folder=root / "Pediatric-CT-SEG")
    # ROI name as shipped -> organ (and the hole-cut ring for the liver)
    named = {
        "Spleen": "spleen",
        "Kidney Left": "kidneys",
        "Kidney Right": "kidneys",
        "Lung_L1": "lungs",
        "Lt Adrenal": "adrenal_glands",
        "Femoral Head Lef": "femoral_heads",
        "Femoral Head Rig": "femoral_heads",
        "Gall Bladder": "gallbladder",
        "Spinal Canal": "spinal_cord",
        "Bones": "whole_bones",
        "Tumor": None,
    }
    for k, patient in enumerate(("Pediatric-CT-SEG-00DAFF3B", "Pediatric-CT-SEG-0A1C2E40")):
        uids = {
            "patient": patient,
            "study": generate_uid(),
            "ct_series": generate_uid(),
            "rt_series": generate_uid(),
            "frame": generate_uid(),
        }
        parts = parts_for(list(named), start=k, hu0=120)
        ct, _ = phantom(parts)
        # the liver: a 7 x 7 square with a 3 x 3 hole on two slices
        ring = np.zeros(SHAPE, bool)
        for z in RING_Z:
            ring[z, 10:17, 8:15] = True
            ring[z, 12:15, 10:13] = False
        ct[ring] = 990
        base = rep.folder / patient / f"01-01-2010-NA-CT ABDOMEN-{k}"
        write_ct_series(base / f"2.000000-CT-{k}", ct, uids=uids)
        rois: dict[str, list[list[float]]] = {}
        for p in parts:
            z, y, x = SLOTS[p.slot]
            rois[str(p.tag)] = [
                _rect(zz, y, x, y + PART[1] - 1, x + PART[2] - 1) for zz in (z, z + 1)
            ]
        rois["Liver"] = [
            c for z in RING_Z for c in (_rect(z, 10, 8, 16, 14), _rect(z, 11, 9, 15, 13))
        ]
        write_rtstruct(base / f"30000.000000-RTSTRUCT-{k}" / "1-1.dcm", rois, uids=uids)
        n = int(np.prod(PART))
        exp: dict[str, Counter] = {}
        for p in parts:
            organ = named[str(p.tag)]
            if organ is not None:
                exp.setdefault(organ, Counter())[p.hu] += n
        exp["liver"] = Counter({990: int(ring.sum())})
        rep.expected[patient] = exp
    # a structure set whose CT series is not in the download
    uids = {
        "patient": "Pediatric-CT-SEG-0BADCAFE",
        "study": generate_uid(),
        "ct_series": generate_uid(),
        "rt_series": generate_uid(),
        "frame": generate_uid(),
    }
    write_rtstruct(
        rep.folder / uids["patient"] / "study" / "rt" / "1-1.dcm",
        {"Liver": [_rect(3, 10, 10, 14, 14)]},
        uids=uids,
    )
    rep.broken["Pediatric-CT-SEG-0BADCAFE"] = "not in the source folder"
    return rep
