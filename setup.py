"""The one thing pyproject.toml cannot say: every package under services/ is
installed inside the modelplane_server namespace, so the servers' names never
collide with anything else installed (pyproject.toml maps the folder)."""
from setuptools import find_packages, setup

setup(packages=["modelplane_server", *(f"modelplane_server.{name}" for name in find_packages("services"))])
