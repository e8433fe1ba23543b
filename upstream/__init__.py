"""Data vendored verbatim from upstream projects at the versions in platform_config/versions.py.

CRDs and Helm chart defaults are the upstream truth the offline tests check the program against. Nothing here is
edited by hand: `python -m upstream.regenerate` rewrites it from the upstream repositories, and SOURCES.json says
where every file came from. Read it through upstream.catalog.
"""
