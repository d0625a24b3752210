"""The embedded mode: the whole pipeline in one process, no AWS account needed.

Local-only dependencies (DuckDB, sqlglot, rich) are imported here and nowhere that a Lambda or
an EMR job imports.
"""
