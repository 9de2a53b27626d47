"""Tarmac: turns tags into release candidates and drives their deployments."""


def package_version() -> str:
    """The installed package's version (pyproject.toml's), as `tarmac --version` prints it."""
    from importlib.metadata import version

    return version("tarmac")
