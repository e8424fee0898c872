"""The organ catalog: the 26 strategy-1 organs and the 19-organ strategy-2 label set.

Paired organs (kidneys, lungs, adrenal glands, femoral heads, hips, clavicles, eyeballs)
are one label. Label ids of the strategy-2 set are fixed: they are the values in every
multi-label map orgseg writes, so they never change between releases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orgseg.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class Organ:
    """One catalog entry. ``paired`` organs merge left and right into one label."""

    name: str
    display: str
    paired: bool = False
    bone: bool = False
    #: the body levels the organ spans, head to thigh (:data:`BODY_LEVELS`): a scan whose
    #: other organs reach beyond both ends has this organ in its field of view
    levels: tuple[int, int] = (0, 7)


#: coarse craniocaudal levels, head (0) to proximal thigh (7)
BODY_LEVELS: tuple[str, ...] = (
    "head",
    "neck",
    "upper thorax",
    "lower thorax",
    "upper abdomen",
    "lower abdomen",
    "pelvis",
    "proximal thigh",
)

STRATEGY1_ORGANS: tuple[Organ, ...] = (
    Organ(name="adrenal_glands", display="Adrenal glands", paired=True, levels=(4, 4)),
    Organ(name="aorta", display="Aorta", levels=(2, 5)),
    Organ(name="brain", display="Brain", levels=(0, 0)),
    Organ(name="clavicles", display="Clavicles", paired=True, bone=True, levels=(1, 2)),
    Organ(name="colon", display="Colon", levels=(4, 6)),
    Organ(name="esophagus", display="Esophagus", levels=(1, 3)),
    Organ(name="eyeballs", display="Eyeballs", paired=True, levels=(0, 0)),
    Organ(name="femoral_heads", display="Femoral heads", paired=True, bone=True, levels=(6, 7)),
    Organ(name="gallbladder", display="Gallbladder", levels=(4, 4)),
    Organ(name="hips", display="Hips", paired=True, bone=True, levels=(5, 7)),
    Organ(name="sacrum", display="Sacrum", bone=True, levels=(5, 6)),
    Organ(name="kidneys", display="Kidneys", paired=True, levels=(4, 5)),
    Organ(name="liver", display="Liver", levels=(3, 4)),
    Organ(name="lungs", display="Lungs", paired=True, levels=(2, 3)),
    Organ(name="pancreas", display="Pancreas", levels=(4, 4)),
    Organ(name="rectum", display="Rectum", levels=(6, 6)),
    # the paper's name for this muscle label; kept verbatim so tables match the paper
    Organ(name="rectus_lumbarium", display="Rectus lumbarium", levels=(4, 6)),
    Organ(name="ribs", display="Ribs", paired=True, bone=True, levels=(2, 4)),
    Organ(name="small_bowel", display="Small bowel", levels=(5, 6)),
    Organ(name="spinal_cord", display="Spinal cord", levels=(1, 4)),
    Organ(name="spleen", display="Spleen", levels=(3, 4)),
    Organ(name="stomach", display="Stomach", levels=(3, 4)),
    Organ(name="urinary_bladder", display="Urinary bladder", levels=(6, 6)),
    Organ(name="vertebrae", display="Vertebrae", bone=True, levels=(1, 6)),
    Organ(name="whole_bones", display="Whole bones", bone=True, levels=(0, 7)),
    Organ(name="heart", display="Heart", levels=(2, 3)),
)

ORGANS: Mapping[str, Organ] = {o.name: o for o in STRATEGY1_ORGANS}

STRATEGY2_ORGANS: tuple[str, ...] = (
    "aorta",
    "brain",
    "clavicles",
    "colon",
    "esophagus",
    "eyeballs",
    "femoral_heads",
    "gallbladder",
    "hips",
    "sacrum",
    "liver",
    "lungs",
    "pancreas",
    "ribs",
    "spleen",
    "stomach",
    "urinary_bladder",
    "vertebrae",
    "heart",
)

# fixed multi-label ids: background 0, then the strategy-2 organs in the order above
STRATEGY2_LABELS: Mapping[str, int] = {name: i + 1 for i, name in enumerate(STRATEGY2_ORGANS)}


def check_organs(names: Iterable[str]) -> tuple[str, ...]:
    """Validate organ names against the catalog, keeping their order.

    >>> check_organs(["liver", "spleen"])
    ('liver', 'spleen')
    """
    names = tuple(names)
    unknown = [n for n in names if n not in ORGANS]
    if unknown:
        raise ConfigError(
            f"unknown organ name(s) {unknown}; expected names from the catalog: {sorted(ORGANS)}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"organ names must be unique, got {list(names)}")
    return names


def label_ids(organs: Iterable[str]) -> dict[str, int]:
    """Label ids for a multi-label map of ``organs``.

    The strategy-2 organs keep their fixed ids 1-19; the other seven catalog organs get
    fixed ids 20-26 in catalog order, so an organ's id never depends on the organ set.

    >>> label_ids(["liver", "spleen"])
    {'liver': 11, 'spleen': 15}
    """
    organs = check_organs(organs)
    extras = [o.name for o in STRATEGY1_ORGANS if o.name not in STRATEGY2_LABELS]
    first_extra = len(STRATEGY2_ORGANS) + 1
    return {
        o: STRATEGY2_LABELS[o] if o in STRATEGY2_LABELS else first_extra + extras.index(o)
        for o in organs
    }
