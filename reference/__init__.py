"""Independent references the tests and the benchmarks check the pipeline against.

Repository-only (not part of the carrental package): `kpis` computes the output tables from the
raw CSVs without any of carrental's code.
"""
