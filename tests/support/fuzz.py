"""Hypothesis profiles and shared strategies for the fuzz targets (tests/fuzz, issue 19 item 2).

Three sizes of the same tests, chosen with ``KAV4MS_FUZZ`` (or CI):

* ``dev`` (default): a few hundred inputs per target, so ``make test`` stays quick;
* ``ci`` (``CI=true`` or ``KAV4MS_FUZZ=ci``): a few thousand per target, the CI short form;
* ``long`` (``KAV4MS_FUZZ=long``, what ``make fuzz`` sets): 100 000 per target.

No deadline in any profile: a slow example on a loaded 2-core box is not a bug, and bounded work
per input is asserted by the targets themselves where it matters.  Every crash a run found is kept
as an explicit ``@example`` on its target (and fixed in the code), so it is replayed by every
profile, the 'dev' one included.
"""

from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROFILES = {"dev": 200, "ci": 2000, "long": 100_000}
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

for _name, _n in PROFILES.items():
    settings.register_profile(_name, max_examples=_n, deadline=None, suppress_health_check=_SLOW_OK,
                              print_blob=True)


def profile_name() -> str:
    chosen = os.environ.get("KAV4MS_FUZZ", "").strip().lower()
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(f"KAV4MS_FUZZ={chosen!r}: use one of {', '.join(PROFILES)}")
        return chosen
    return "ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev"


def load_profile() -> str:
    name = profile_name()
    settings.load_profile(name)
    return name


def scaled(fraction: float) -> settings:
    """Settings for a target that costs a real socket round trip: a fraction of the dev and CI
    counts (never below 50), the full 100 000 in the long profile (the issue's floor per target)."""
    name = profile_name()
    if name == "long":
        return settings(max_examples=PROFILES[name])
    return settings(max_examples=max(50, int(PROFILES[name] * fraction)))


# -- strategies shared by several targets ---------------------------------------------------------
#: Characters that break line-oriented protocols and header syntax on purpose.
NASTY = "\r\n\x00\t \\\"';:=,[]#<>@()%\x7f\x80\xff\u2028\u00e9\u0663\u00b2"

nasty_text = st.text(alphabet=st.sampled_from(NASTY) | st.characters(codec="utf-8"), max_size=120)
line_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=80)

#: An SMTP reply line: three digits, then space or hyphen, then printable text (RFC 5321 4.2).
SMTP_REPLY = re.compile(rb"^[2-5][0-9][0-9](?:[ -][\x20-\x7e\x80-\xff]*)?$")


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    """``data`` with its last ``cut`` bytes dropped and each (position, value) edit applied
    (positions wrap), the one way the container fuzzers damage a valid file."""
    b = bytearray(data[: max(0, len(data) - cut)] if cut else data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    return bytes(b)
