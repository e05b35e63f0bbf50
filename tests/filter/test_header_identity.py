"""Honest identity (issue 11 item 14): headers and notices name this project, in the guide's
6.8.4 format, and an empty database yields a start-up warning and no bases date."""

from __future__ import annotations

import re

from tests.support.filter import mail

BOB = "bob@example.com"


def test_x_anti_virus_names_this_project(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}})
    replies = st.send(mail("hello"))
    assert replies[BOB][0] == 250
    (copy,) = st.sink.deliveries()
    xav = copy.msg["X-Anti-Virus"]
    assert re.fullmatch(r"kav4mailservers version 5\.5/RELEASE, bases: \d{8} #1, check: \d{8} clean", xav), xav
    assert "Kaspersky" not in copy.data.decode("utf-8", "replace")


def test_an_empty_database_is_a_warning_and_has_no_date(make_stack) -> None:  # noqa: ANN001
    st = make_stack({"default": {}}, start=False)
    for f in (st.root / "bases").iterdir():
        f.unlink()
    st.start()
    replies = st.send(mail("hello"))
    assert replies[BOB][0] == 250
    (copy,) = st.sink.deliveries()
    assert re.fullmatch(r"kav4mailservers version 5\.5/RELEASE, bases: none #0, check: \d{8} clean",
                        copy.msg["X-Anti-Virus"]), copy.msg["X-Anti-Virus"]
    log = (st.root / "log" / "aveserver.log").read_text()
    assert re.search(r"^\[[^]]+ W\] the anti-virus database in .* is empty", log, re.M), log
