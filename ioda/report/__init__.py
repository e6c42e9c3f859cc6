"""Aggregation, tables, figures and the summary report of the IODA reproduction (ioda aggregate/tables/figures/report)."""
