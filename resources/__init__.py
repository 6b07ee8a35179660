"""Data files: the GPU and model catalogs. Read them through ``resource_path``."""

from importlib import resources as _res
from pathlib import Path


def resource_path(name: str) -> Path:
    """Path of a bundled data file (works from a checkout, a wheel and a bundle)."""
    return Path(str(_res.files(__name__).joinpath(name)))
