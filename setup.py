"""The packages: refstyle's own, and the catalogue of known weights.

The catalogue's records stay in the checkout's top-level ``weights/`` folder (the
project's layout: data, not code) and are installed with every install, editable or
not, as the package ``refstyle.weights.records``, where
:mod:`refstyle.weights.catalogue` finds them. Everything else is in ``setup.cfg``.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["refstyle", "refstyle.*"]) + ["refstyle.weights.records"],
    package_dir={"refstyle.weights.records": "weights"},
)
