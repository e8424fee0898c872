"""The source registry: each public dataset as declarative data (label value(s) -> organ)."""

from orgseg.sources.registry import Source, SourceRegistry, builtin_registry, load_registry

__all__ = ["Source", "SourceRegistry", "builtin_registry", "load_registry"]
