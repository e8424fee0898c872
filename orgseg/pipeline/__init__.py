"""Pipeline stages: importable, idempotent functions of (config, input URLs) -> output URLs."""
