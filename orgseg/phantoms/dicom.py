"""Synthetic CT series as DICOM files, for archives that tests and benchmarks build."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def ct_series_files(
    ct_hu: np.ndarray,
    *,
    series_uid: str,
    spacing_mm: Sequence[float] = (1.5, 0.8, 0.8),
    patient_id: str = "PHANTOM",
) -> list[bytes]:
    """One axial DICOM file per slice of a canonical (z, y, x) CT in HU, as bytes
    (explicit VR little endian, int16 stored values with a -1024 rescale intercept)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    study = generate_uid()
    frame = generate_uid()
    out = []
    for z in range(ct_hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(f"{z}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame
        ds.InstanceNumber = z + 1
        ds.Rows, ds.Columns = int(ct_hu.shape[1]), int(ct_hu.shape[2])
        ds.PixelSpacing = [float(spacing_mm[1]), float(spacing_mm[2])]
        ds.SliceThickness = float(spacing_mm[0])
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, z * float(spacing_mm[0])]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.PixelData = (np.asarray(ct_hu[z], np.int32) + 1024).astype(np.int16).tobytes()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out
