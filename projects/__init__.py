"""Shepherd projects: one package per project, each with a ``steps.py`` registry and ``workers/``."""
