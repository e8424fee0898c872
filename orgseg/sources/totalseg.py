"""TotalSegmentator v2 ``total`` task: class id <-> class name.

TotalSegmentator writes either one multi-label file with these ids or, by default, one
binary file per class named ``<class name>.nii.gz``. The built-in registry's
``totalsegmentator`` source maps the ids to catalog organs; this table adds the names so
a folder of per-class files maps the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

_VERTEBRAE = ["S1"] + [f"L{i}" for i in range(5, 0, -1)] + [f"T{i}" for i in range(12, 0, -1)]
_VERTEBRAE += [f"C{i}" for i in range(7, 0, -1)]

_NAMES: list[str] = [
    "spleen",
    "kidney_right",
    "kidney_left",
    "gallbladder",
    "liver",
    "stomach",
    "pancreas",
    "adrenal_gland_right",
    "adrenal_gland_left",
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
    "esophagus",
    "trachea",
    "thyroid_gland",
    "small_bowel",
    "duodenum",
    "colon",
    "urinary_bladder",
    "prostate",
    "kidney_cyst_left",
    "kidney_cyst_right",
    "sacrum",
    *(f"vertebrae_{v}" for v in _VERTEBRAE),  # 26-50
    "heart",
    "aorta",
    "pulmonary_vein",
    "brachiocephalic_trunk",
    "subclavian_artery_right",
    "subclavian_artery_left",
    "common_carotid_artery_right",
    "common_carotid_artery_left",
    "brachiocephalic_vein_left",
    "brachiocephalic_vein_right",
    "atrial_appendage_left",
    "superior_vena_cava",
    "inferior_vena_cava",
    "portal_vein_and_splenic_vein",
    "iliac_artery_left",
    "iliac_artery_right",
    "iliac_vena_left",
    "iliac_vena_right",
    "humerus_left",
    "humerus_right",
    "scapula_left",
    "scapula_right",
    "clavicula_left",
    "clavicula_right",
    "femur_left",
    "femur_right",
    "hip_left",
    "hip_right",
    "spinal_cord",
    "gluteus_maximus_left",
    "gluteus_maximus_right",
    "gluteus_medius_left",
    "gluteus_medius_right",
    "gluteus_minimus_left",
    "gluteus_minimus_right",
    "autochthon_left",
    "autochthon_right",
    "iliopsoas_left",
    "iliopsoas_right",
    "brain",
    "skull",
    *(f"rib_left_{i}" for i in range(1, 13)),  # 92-103
    *(f"rib_right_{i}" for i in range(1, 13)),  # 104-115
    "sternum",
    "costal_cartilages",
]

#: class id -> class name, ids 1-117
TOTAL_CLASSES: Mapping[int, str] = {i: name for i, name in enumerate(_NAMES, start=1)}

#: class name -> class id
TOTAL_CLASS_IDS: Mapping[str, int] = {name: i for i, name in TOTAL_CLASSES.items()}
