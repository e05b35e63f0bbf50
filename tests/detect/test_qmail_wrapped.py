"""qmail-queue already wrapped (guide 4.4.2 renames it to queue.kav55): detection must say so,
so that ``kavsetup install`` refuses instead of wrapping our wrapper."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from kavsetup.detect import detect


@pytest.fixture
def qmail_root(fixture_root: Callable[[str], Path], tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(fixture_root("freebsd-5.3-qmail"), root, symlinks=True)
    return root


@pytest.mark.root
def test_pristine_qmail_is_not_wrapped(qmail_root: Path) -> None:
    info = detect(qmail_root).mta("qmail")
    assert info is not None and not info.qmail.already_wrapped and info.qmail.original_queue is None


@pytest.mark.root
def test_queue_kav55_present(qmail_root: Path) -> None:
    bin_dir = qmail_root / "var/qmail/bin"
    os.rename(bin_dir / "qmail-queue", bin_dir / "queue.kav55")
    (bin_dir / "qmail-queue").write_bytes(b"#!/bin/sh\nexec /opt/kav/5.5/kav4mailservers/bin/smtpscanner\n")
    info = detect(qmail_root).mta("qmail")
    assert info is not None and info.qmail.already_wrapped
    assert str(info.qmail.original_queue) == "/var/qmail/bin/queue.kav55"


@pytest.mark.root
def test_our_marker_in_qmail_queue(qmail_root: Path) -> None:
    (qmail_root / "var/qmail/bin/qmail-queue").write_bytes(b"\0kav4mailservers smtpscanner qmail wrapper\0")
    info = detect(qmail_root).mta("qmail")
    assert info is not None and info.qmail.already_wrapped and info.qmail.original_queue is None


@pytest.mark.root
def test_foreign_wrapper_symlink(qmail_root: Path) -> None:
    queue = qmail_root / "var/qmail/bin/qmail-queue"
    os.rename(queue, qmail_root / "var/qmail/bin/qmail-queue.orig")
    (qmail_root / "usr/local/bin").mkdir(parents=True)
    (qmail_root / "usr/local/bin/qmail-scanner-queue").write_bytes(b"#!/usr/bin/perl\n")
    os.symlink("/usr/local/bin/qmail-scanner-queue", queue)
    info = detect(qmail_root).mta("qmail")
    assert info is not None and info.qmail.already_wrapped
