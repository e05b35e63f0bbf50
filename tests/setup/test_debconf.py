"""The .deb's debconf questions are the setup's answers (kavsetup/answers.py): same keys, same
choices, and every one of them handed to kavsetup by postinst.  (dpkg-reconfigure itself runs in
the distro matrix: scenario "reconfigure".)"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from kavsetup.answers import BY_KEY
from tests.support.integration import REPO

DEBIAN = REPO / "pkg" / "deb" / "debian"


def _templates() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for block in DEBIAN.joinpath("kav4mailservers.templates").read_text().split("\n\n"):
        fields = dict(re.findall(r"^([A-Z][a-z]+): ?(.*)$", block, re.M))
        out[fields["Template"].split("/", 1)[1]] = fields
    return out


def test_every_debconf_question_is_an_answer_with_the_same_choices() -> None:
    templates = _templates()
    questions = {k: t for k, t in templates.items() if t["Type"] != "error" and k != "integrate"}
    assert set(questions) <= set(BY_KEY)
    for key, t in questions.items():
        if t["Type"] == "select":
            choices = tuple(c.strip() for c in t["Choices"].split(","))
            assert set(choices) - {"auto"} == set(BY_KEY[key].choices), key


def test_postinst_passes_every_question_and_config_asks_each_with_a_priority() -> None:
    questions = {k for k, t in _templates().items() if t["Type"] != "error" and k != "integrate"}
    postinst = DEBIAN.joinpath("kav4mailservers.postinst").read_text()
    loop = re.search(r"for q in ([a-z_ ]+); do", postinst)
    assert loop and set(loop.group(1).split()) == questions
    config = DEBIAN.joinpath("kav4mailservers.config").read_text()
    asked = set(re.findall(r'db_input (?:low|medium|high) "?kav4mailservers/([a-z_]+)', config))
    asked |= set(re.findall(r"ask_port ([a-z_]+) ", config))
    assert questions <= asked


@pytest.mark.skipif(shutil.which("dash") is None, reason="dash (Debian's /bin/sh) not installed")
def test_maintainer_scripts_parse_with_debians_sh() -> None:
    for name in ("kav4mailservers.config", "kav4mailservers.postinst"):
        subprocess.run(["dash", "-n", str(DEBIAN / name)], check=True)
