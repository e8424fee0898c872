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


STRATEGY1_ORGANS: tuple[Organ, ...] = (
    Organ(name="adrenal_glands", display="Adrenal glands", paired=True),
    Organ(name="aorta", display="Aorta"),
    Organ(name="brain", display="Brain"),
    Organ(name="clavicles", display="Clavicles", paired=True, bone=True),
    Organ(name="colon", display="Colon"),
    Organ(name="esophagus", display="Esophagus"),
    Organ(name="eyeballs", display="Eyeballs", paired=True),
    Organ(name="femoral_heads", display="Femoral heads", paired=True, bone=True),
    Organ(name="gallbladder", display="Gallbladder"),
    Organ(name="hips", display="Hips", paired=True, bone=True),
    Organ(name="sacrum", display="Sacrum", bone=True),
    Organ(name="kidneys", display="Kidneys", paired=True),
    Organ(name="liver", display="Liver"),
    Organ(name="lungs", display="Lungs", paired=True),
    Organ(name="pancreas", display="Pancreas"),
    Organ(name="rectum", display="Rectum"),
    # the paper's name for this muscle label; kept verbatim so tables match the paper
    Organ(name="rectus_lumbarium", display="Rectus lumbarium"),
    Organ(name="ribs", display="Ribs", paired=True, bone=True),
    Organ(name="small_bowel", display="Small bowel"),
    Organ(name="spinal_cord", display="Spinal cord"),
    Organ(name="spleen", display="Spleen"),
    Organ(name="stomach", display="Stomach"),
    Organ(name="urinary_bladder", display="Urinary bladder"),
    Organ(name="vertebrae", display="Vertebrae", bone=True),
    Organ(name="whole_bones", display="Whole bones", bone=True),
    Organ(name="heart", display="Heart"),
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
