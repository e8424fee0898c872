"""Deterministic torso / whole-body CT phantoms (pure numpy).

Organs are deformed ellipsoids and tubes at anatomical places, in physical millimetres,
rendered onto any grid: a 48x64x64 toy volume for training tests or a 512x512x600 scan
for memory benchmarks. The frame is canonical: axis 0 inferior->superior, axis 1
anterior->posterior, axis 2 patient right->left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from orgseg.catalog import label_ids
from orgseg.errors import DataContractError

PHANTOM_ORGANS: tuple[str, ...] = (
    "liver",
    "spleen",
    "kidneys",
    "lungs",
    "heart",
    "aorta",
    "stomach",
    "urinary_bladder",
    "vertebrae",
    "pancreas",
)

HU = {
    "air": -1000.0,
    "fat": -100.0,
    "muscle": 50.0,
    "liver": 180.0,
    "spleen": 260.0,
    "kidneys": 300.0,
    "lungs": -850.0,
    "heart": 360.0,  # contrast-enhanced blood pool (arterial phase)
    "aorta": 450.0,
    "stomach": -30.0,
    "urinary_bladder": 5.0,
    "vertebrae": 650.0,
    "pancreas": 120.0,
    "bone": 700.0,
    "table": 250.0,
    "cushion": -750.0,
    "blanket": -20.0,
    "tube": 120.0,
}

Extent = Literal["torso", "whole_body"]


@dataclass(frozen=True, slots=True)
class Phantom:
    """A synthetic CT with its ground truth.

    ``labels`` uses :func:`orgseg.catalog.label_ids` of :data:`PHANTOM_ORGANS`.
    """

    ct_hu: np.ndarray  # int16 (Z, Y, X)
    labels: np.ndarray  # uint8 (Z, Y, X)
    body: np.ndarray  # bool, the patient without table/blanket/tube
    objects: np.ndarray  # bool, table + cushion + blanket + tube (for body-contour tests)
    arms: np.ndarray  # bool
    spacing_mm: tuple[float, float, float]
    label_ids: dict[str, int]


class _Canvas:
    def __init__(
        self, shape: Sequence[int], spacing_mm: Sequence[float], center_mm: Sequence[float]
    ):
        self.shape = tuple(int(s) for s in shape)
        self.spacing = np.asarray(spacing_mm, float)
        self.center = np.asarray(center_mm, float)

    def box(self, lo_mm: Sequence[float], hi_mm: Sequence[float]) -> tuple[slice, ...] | None:
        out = []
        for ax in range(3):
            a = int(np.floor((lo_mm[ax] + self.center[ax]) / self.spacing[ax]))
            b = int(np.ceil((hi_mm[ax] + self.center[ax]) / self.spacing[ax])) + 1
            a, b = max(a, 0), min(b, self.shape[ax])
            if a >= b:
                return None
            out.append(slice(a, b))
        return tuple(out)

    def coords(self, box: tuple[slice, ...]) -> list[np.ndarray]:
        return [
            (np.arange(box[ax].start, box[ax].stop) * self.spacing[ax] - self.center[ax]).reshape(
                [-1 if a == ax else 1 for a in range(3)]
            )
            for ax in range(3)
        ]

    def ellipsoid(
        self,
        center: Sequence[float],
        radii: Sequence[float],
        *,
        wobble: float = 0.0,
        phase: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> tuple[tuple[slice, ...], np.ndarray] | None:
        c, r = np.asarray(center, float), np.asarray(radii, float)
        reach = r * (1.0 + abs(wobble))
        box = self.box(c - reach, c + reach)
        if box is None:
            return None
        z, y, x = self.coords(box)
        u = [(z - c[0]) / r[0], (y - c[1]) / r[1], (x - c[2]) / r[2]]
        d = u[0] ** 2 + u[1] ** 2 + u[2] ** 2
        if wobble:
            d = d * (
                1.0
                + wobble * np.sin(2.1 * u[0] + phase[0]) * np.cos(1.7 * u[1] + phase[1])
                + wobble * np.sin(1.3 * u[2] + phase[2])
            )
        return box, d <= 1.0

    def cylinder_z(
        self, center_yx: Sequence[float], radii_yx: Sequence[float], z_range: Sequence[float]
    ) -> tuple[tuple[slice, ...], np.ndarray] | None:
        lo = (z_range[0], center_yx[0] - radii_yx[0], center_yx[1] - radii_yx[1])
        hi = (z_range[1], center_yx[0] + radii_yx[0], center_yx[1] + radii_yx[1])
        box = self.box(lo, hi)
        if box is None:
            return None
        z, y, x = self.coords(box)
        inside = ((y - center_yx[0]) / radii_yx[0]) ** 2 + (
            (x - center_yx[1]) / radii_yx[1]
        ) ** 2 <= 1
        inside = inside & (z >= z_range[0]) & (z <= z_range[1])
        return box, np.broadcast_to(inside, tuple(s.stop - s.start for s in box))


def make_phantom(
    *,
    shape: Sequence[int] = (48, 64, 64),
    spacing_mm: Sequence[float] = (8.0, 7.5, 7.5),
    seed: int = 0,
    paediatric: bool = False,
    extent: Extent = "torso",
    table: bool = True,
    blanket: bool = True,
    tube: bool = True,
    arms: bool = True,
    noise_hu: float = 12.0,
) -> Phantom:
    """Render one phantom.

    Parameters
    ----------
    shape, spacing_mm : the (z, y, x) grid. The body is centred in the field of view.
    seed : all randomness (organ shapes, positions, noise) derives from it.
    paediatric : a child-sized body (about 0.6x an adult's dimensions).
    extent : ``"torso"`` (neck to upper thighs fills the field) or ``"whole_body"``
        (head to feet; the trunk anatomy sits in the middle).

    Examples
    --------
    >>> p = make_phantom(seed=1)
    >>> p.ct_hu.shape, p.ct_hu.dtype.name, sorted(p.label_ids)[:3]
    ((48, 64, 64), 'int16', ['aorta', 'heart', 'kidneys'])
    >>> bool((make_phantom(seed=1).ct_hu == p.ct_hu).all())
    True
    """
    if len(shape) != 3 or min(shape) < 8:
        raise DataContractError(f"expected a 3D shape of at least 8 voxels per axis, got {shape}")
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing_mm, float)
    fov = np.asarray(shape) * spacing
    canvas = _Canvas(shape, spacing, fov / 2.0)  # coordinates in mm around the FOV centre
    scale = 0.6 if paediatric else 1.0
    jit = lambda s: 1.0 + rng.uniform(-s, s)  # noqa: E731
    # trunk: lateral half-width a, AP half-depth b (mm), limited by the field of view
    a = min(165.0 * scale * jit(0.08), 0.30 * fov[2])
    b = min(115.0 * scale * jit(0.08), 0.30 * fov[1])
    body_y = -0.05 * fov[1]  # shifted anteriorly, leaving room for the table
    if extent == "torso":
        trunk_z = (-fov[0] / 2 - 10, fov[0] / 2 + 10)
    else:
        trunk_z = (-0.18 * fov[0], 0.30 * fov[0])
    tz0, tz1 = trunk_z
    tlen = tz1 - tz0

    def at(t: float) -> float:  # z (mm) at fraction t of the trunk, 0 = pelvis floor
        return tz0 + t * tlen

    ct = np.full(shape, HU["air"], dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    ids = label_ids(PHANTOM_ORGANS)
    body = np.zeros(shape, dtype=bool)
    objects = np.zeros(shape, dtype=bool)
    arm_mask = np.zeros(shape, dtype=bool)

    def paint(shape_box, value: float, *, into=None, label: str | None = None, where=None) -> None:
        if shape_box is None:
            return
        box, m = shape_box
        if where is not None:
            m = m & where[box]
        ct[box][m] = value
        if into is not None:
            into[box] |= m
        if label is not None:
            labels[box][m] = ids[label]

    # trunk: fat shell, muscle inside
    trunk = canvas.cylinder_z((body_y, 0.0), (b, a), trunk_z)
    paint(trunk, HU["fat"], into=body)
    paint(canvas.cylinder_z((body_y, 0.0), (b - 12 * scale, a - 14 * scale), trunk_z), HU["muscle"])
    if extent == "whole_body":
        head_r = 95.0 * scale
        head_c = (tz1 + 0.9 * head_r, body_y, 0.0)
        paint(
            canvas.cylinder_z((body_y, 0.0), (50 * scale, 55 * scale), (tz1 - 5, head_c[0])),
            HU["muscle"],
            into=body,
        )
        paint(
            canvas.ellipsoid(head_c, (head_r, 0.9 * head_r, 0.8 * head_r)), HU["muscle"], into=body
        )
        paint(canvas.ellipsoid(head_c, (0.8 * head_r, 0.7 * head_r, 0.6 * head_r)), HU["bone"])
        paint(canvas.ellipsoid(head_c, (0.7 * head_r, 0.6 * head_r, 0.5 * head_r)), 35.0)
        for side in (-1, 1):
            leg = canvas.cylinder_z(
                (body_y, side * 0.45 * a), (0.6 * b, 0.45 * a), (-fov[0] / 2 + 20, tz0 + 5)
            )
            paint(leg, HU["muscle"], into=body)
            paint(
                canvas.cylinder_z(
                    (body_y, side * 0.45 * a), (18 * scale, 18 * scale), (-fov[0] / 2 + 20, tz0 + 5)
                ),
                HU["bone"],
            )

    def organ(
        name: str,
        center_t: float,
        yx: tuple[float, float],
        radii: tuple[float, float, float],
        *,
        wobble: float = 0.08,
    ) -> None:
        c = (
            at(center_t) + rng.uniform(-0.01, 0.01) * tlen,
            body_y + yx[0] * b + rng.uniform(-4, 4) * scale,
            yx[1] * a + rng.uniform(-4, 4) * scale,
        )
        r = tuple(v * scale * jit(0.08) for v in radii)
        paint(
            canvas.ellipsoid(c, r, wobble=wobble, phase=rng.uniform(0, 2 * np.pi, 3)),
            HU[name],
            label=name,
            where=body,
        )

    # lungs (one label, two ellipsoids), heart between them
    for side in (-1, 1):
        organ("lungs", 0.80, (-0.05, side * 0.42), (0.15 * tlen, 0.62 * b, 0.33 * a), wobble=0.05)
    organ("heart", 0.73, (-0.28, 0.12), (0.10 * tlen, 0.48 * b, 0.34 * a))
    organ("liver", 0.56, (-0.05, -0.38), (0.08 * tlen, 0.62 * b, 0.42 * a))
    organ("spleen", 0.57, (0.20, 0.58), (0.08 * tlen, 0.36 * b, 0.20 * a))
    organ("stomach", 0.55, (-0.35, 0.32), (0.05 * tlen, 0.30 * b, 0.22 * a))
    organ("pancreas", 0.50, (0.00, 0.12), (0.02 * tlen, 0.14 * b, 0.30 * a))
    for side in (-1, 1):
        organ("kidneys", 0.44, (0.38, side * 0.38), (0.05 * tlen, 0.22 * b, 0.13 * a))
    organ("urinary_bladder", 0.10, (-0.30, 0.0), (0.04 * tlen, 0.28 * b, 0.20 * a))
    # aorta: a tube left-anterior of the spine
    aorta_r = 11.0 * scale
    paint(
        canvas.cylinder_z((body_y + 0.42 * b, 0.06 * a), (aorta_r, aorta_r), (at(0.30), at(0.78))),
        HU["aorta"],
        label="aorta",
        where=body,
    )
    # vertebrae: blocks along the spine with discs between
    vert_r = (20.0 * scale, 22.0 * scale)
    n_vert = 18
    for k in range(n_vert):
        z0 = at(0.12 + k * 0.88 / n_vert)
        z1 = z0 + 0.88 / n_vert * tlen * 0.78
        paint(
            canvas.cylinder_z((body_y + 0.70 * b, 0.0), vert_r, (z0, z1)),
            HU["vertebrae"],
            label="vertebrae",
            where=body,
        )

    if arms:
        for side in (-1, 1):
            x = side * (a + 55.0 * scale)
            arm = canvas.cylinder_z(
                (body_y - 0.1 * b, x), (40 * scale, 40 * scale), (at(0.35), tz1)
            )
            paint(arm, HU["muscle"], into=arm_mask)
            paint(
                canvas.cylinder_z((body_y - 0.1 * b, x), (11 * scale, 11 * scale), (at(0.35), tz1)),
                HU["bone"],
            )
        body |= arm_mask

    zlim = (-fov[0] / 2, fov[0] / 2)
    body_bottom = body_y + b
    if table:
        cushion = canvas.box(
            (zlim[0], body_bottom, -0.45 * fov[2]), (zlim[1], body_bottom + 30, 0.45 * fov[2])
        )
        if cushion is not None:
            ct[cushion][~body[cushion]] = HU["cushion"]
            objects[cushion] |= ~body[cushion]
        shell = canvas.box(
            (zlim[0], body_bottom + 30, -0.45 * fov[2]),
            (zlim[1], body_bottom + 30 + max(5.0, spacing[1]), 0.45 * fov[2]),
        )
        if shell is not None:
            ct[shell] = HU["table"]
            objects[shell] = True
    if blanket:
        # a sheet resting on the anterior-most point and draping away towards the sides
        thick = max(4.0, spacing[1])
        cy, ry, rx = body_y + 0.25 * b, 1.25 * b + 3.0, a + 60.0 * scale
        box = canvas.box(
            (at(0.2), cy - ry - thick - 5, -rx - thick - 5),
            (at(0.7), body_y + 0.2 * b, rx + thick + 5),
        )
        if box is not None:
            z, y, x = canvas.coords(box)
            rel = np.sqrt(((y - cy) / ry) ** 2 + (x / rx) ** 2)
            sheet = (rel >= 1.0) & (rel <= 1.0 + thick / ry) & (y < body_y + 0.2 * b)
            sheet = np.broadcast_to(sheet, tuple(s.stop - s.start for s in box)) & ~body[box]
            ct[box][sheet] = HU["blanket"]
            objects[box] |= sheet
    if tube:
        t = canvas.cylinder_z((body_bottom - 10, a + 20), (4.0, 4.0), zlim)
        if t is not None:
            box, m = t
            m = m & ~body[box]
            ct[box][m] = HU["tube"]
            objects[box] |= m

    if noise_hu > 0:
        ct += rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    ct_i16 = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)
    return Phantom(
        ct_hu=ct_i16,
        labels=labels,
        body=body,
        objects=objects,
        arms=arm_mask,
        spacing_mm=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        label_ids=ids,
    )
