"""Fuzz targets load the Hypothesis profile chosen by KAV4MS_FUZZ / CI (tests/support/fuzz.py)."""

from tests.support.fuzz import load_profile

load_profile()
