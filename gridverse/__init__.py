"""gridverse: a live digital twin of distribution grids. Shared core: settings, points, historian, CLI."""

__version__ = "0.1.0"
