"""Evaluation in the paper's format: per-case metrics, mean +- sd tables per group,
normality and Wilcoxon tests, box plots, cross-validation and chunking tables, and the
TotalSegmentator comparison (``orgseg evaluate``)."""
