"""Seeded synthetic CT phantoms with organs, table, blanket, tube and arms."""

from orgseg.phantoms.anatomy import PHANTOM_ORGANS, Phantom, make_phantom
from orgseg.phantoms.sources import PhantomSourcePlan, plan_sources

__all__ = ["PHANTOM_ORGANS", "Phantom", "PhantomSourcePlan", "make_phantom", "plan_sources"]
