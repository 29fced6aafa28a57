"""Shim so that `pip install -e .` and colcon's setuptools path both work; metadata lives in pyproject.toml."""
from setuptools import setup

setup()
