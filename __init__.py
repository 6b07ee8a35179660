"""cardfit: which LLMs fit your GPU, and how.

The repository root is this package: ``core`` (the engine, no Qt), ``gui`` (the Qt
faces), ``cli`` (the command line) and ``resources`` (the GPU and model catalogs).
"""

__version__ = "0.1.0"
