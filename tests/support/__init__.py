"""Helpers shared by several test areas (importable as ``tests.support``)."""
