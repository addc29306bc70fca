"""fxemu.analysis: reading run directories; curves, histograms, tables, statistics, reports.

Installed as ``fxemu.analysis`` from the repository's top-level ``analysis/`` folder.
"""
