"""The package version: its one home (``pyproject.toml`` reads it from here, see
``[tool.setuptools.dynamic]``; ``attngan.__version__`` re-exports it)."""

__version__ = "0.1.0"
