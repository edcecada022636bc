"""Benchmark protocols: each composes the metric functions of the package (it never re-derives a
formula) with a published protocol's sampling, filtering, units and conventions.

dtu.py: DTU MVS (DTUeval-python). human.py: CAPE clothed humans (ICON-2022 / ECON).
scoring.py: the `score` command's generic report: every point and surface metric of two files.
"""
