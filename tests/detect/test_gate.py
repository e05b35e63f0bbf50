"""Guide 1.2's version gate: "sendmail 8.x, qmail 1.03, postfix 1.0 or higher, exim 4.0"."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from kavsetup.detect import (
    GateVerdict,
    MTAInfo,
    MTAKind,
    QmailInfo,
    Version,
    check_version,
)


def mta(kind: MTAKind, version: str | None) -> MTAInfo:
    details = QmailInfo(PurePosixPath("/var/qmail"), PurePosixPath("/var/qmail/bin/qmail-queue"), True, False,
                        None, PurePosixPath("/var/qmail/control"), (), None)
    return MTAInfo(kind=kind, installed=True, active=True,
                   version=Version.parse(version) if version else None, version_source="test",
                   binary=None, config_file=None, package=None, details=details)


@pytest.mark.parametrize(("kind", "version", "ok"), [
    (MTAKind.SENDMAIL, "8.12.8", True), (MTAKind.SENDMAIL, "8.18.1/Debian-6", True),
    (MTAKind.SENDMAIL, "7.6", False), (MTAKind.SENDMAIL, "5.67", False),
    (MTAKind.POSTFIX, "1.0.0", True), (MTAKind.POSTFIX, "1.1.11", True), (MTAKind.POSTFIX, "3.10.13", True),
    (MTAKind.POSTFIX, "19991231-pl13", False), (MTAKind.POSTFIX, "0.9", False),
    (MTAKind.EXIM, "4.0", True), (MTAKind.EXIM, "4.98.2", True), (MTAKind.EXIM, "3.35", False),
    (MTAKind.EXIM, "5.0", False),
    (MTAKind.QMAIL, "1.03", True), (MTAKind.QMAIL, "1.06", True), (MTAKind.QMAIL, "1.08", False),
    (MTAKind.QMAIL, "1.02", False),
])
def test_gate(kind: MTAKind, version: str, ok: bool) -> None:
    result = check_version(mta(kind, version))
    assert result.ok is ok
    assert result.verdict is (GateVerdict.SUPPORTED if ok else GateVerdict.UNSUPPORTED)
    assert version in result.message and "\n" not in result.message
    if not ok:
        assert "need" in result.message and "--force" in result.message


def test_unknown_version_is_allowed_with_a_warning() -> None:
    result = check_version(mta(MTAKind.QMAIL, None))
    assert result.ok and result.verdict is GateVerdict.UNKNOWN
    assert "could not be determined" in result.message


def test_version_ordering_is_numeric() -> None:
    new, old = Version.parse("3.10.1"), Version.parse("3.9.0")
    assert new is not None and old is not None and new > old
    assert Version.parse("1.03") == Version.parse("1.3")
    assert Version.parse("unknown") is None
    snapshot = Version.parse("Snapshot-20001217")
    assert snapshot is not None and not check_version(mta(MTAKind.POSTFIX, snapshot.text)).ok
