"""MTA fragments, start-up scripts and units shipped under kavsetup/templates/mta/.

Plain ``string.Template`` (``${name}``) rather than jinja2: these files are shell and unit
syntax full of braces, and every substituted value is a path we chose, never user text."""

from __future__ import annotations

from importlib import resources
from string import Template


def render(name: str, **values: str) -> str:
    text = resources.files("kavsetup").joinpath("templates", "mta", name).read_text()
    return Template(text).substitute(values)
