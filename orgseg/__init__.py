"""orgseg: whole-body CT multi-organ segmentation, trained from partially labelled public data."""

__version__ = "0.1.0"

__all__ = ["__version__"]
