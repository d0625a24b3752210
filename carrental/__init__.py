"""Car-rental analytics pipeline: shared core for the CLI, the Lambdas and the Spark jobs."""

__version__ = "0.1.0"
