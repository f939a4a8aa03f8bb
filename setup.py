"""Package discovery for the two import packages that live outside a ``src/`` layout.

The server's source folder is ``cluster/`` but it installs as ``slotcache_server``
(a top-level ``cluster`` module would clash with unrelated distributions), and the
SDK lives under ``clients/python/``. ``[tool.setuptools.packages.find]`` cannot
rename a folder, so the subpackages are found here and mapped under their
installed names; everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = {"slotcache_server": "cluster", "slotcache": "clients/python/slotcache"}


def packages(name: str, folder: str) -> list[str]:
    """``name`` and every package below ``folder``, named as installed."""
    return [name, *(f"{name}.{sub}" for sub in find_packages(folder))]


setup(
    packages=[pkg for name, folder in ROOTS.items() for pkg in packages(name, folder)],
    package_dir=ROOTS,
)
