"""Issue 11 item 10: the kavadministrators group delivers viruses unchanged, so the masks kavsetup
writes for it are anchored; the guide's own unanchored masks keep their regexec(3) meaning (a
search); `kavsetup config check` warns about an unanchored mask in that group."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kavsetup.conffile import ADMIN_GROUP
from kavsetup.mta.common import admin_masks
from runtime.config import load_config

REPO = Path(__file__).resolve().parents[2]


def _conf(tmp_path: Path, recipients: str) -> Path:
    p = tmp_path / "kav4mailservers.conf"
    p.write_text("[smtpscan.group:kavadministrators]\n"
                 f"Recipients={recipients}\nRecipientAction=unchanged\n\n"
                 "[smtpscan.group:default]\nRecipients=.*\n")
    return p


def _group(conf: Path, rcpt: str) -> str:
    return load_config(conf).select_group("bob@example.org", rcpt).name


def test_generated_masks_are_anchored_and_take_in_only_the_administrators(tmp_path: Path) -> None:
    masks = admin_masks(("root", "alice@example.com"))
    assert masks == r"^postmaster@.*$,^root@.*$,^alice@example\.com$"
    conf = _conf(tmp_path, masks)
    for admin in ("postmaster@mta.test", "root@mta.test", "alice@example.com", "ALICE@Example.COM"):
        assert _group(conf, admin) == "kavadministrators", admin
    # the reproduced case: each of these fell into the admin group and got EICAR unchanged
    for outsider in ("malice@example.com", "groot@mta.test", "alice@example.com.evil.org",
                     "xpostmaster@mta.test", "notalice@example.com", "alice@example.com.evil.org"):
        assert _group(conf, outsider) == "default", outsider


def test_the_default_admin_group_is_anchored() -> None:
    assert all(m.startswith("^") and m.endswith("$") for m in ADMIN_GROUP["Recipients"])


def test_the_guides_unanchored_masks_keep_their_search_meaning(tmp_path: Path) -> None:
    """Guide 6.1.1's style (`postmaster@.*`) is not rewritten: it still matches as regexec does."""
    conf = _conf(tmp_path, "postmaster@.*")
    assert _group(conf, "postmaster@mta.test") == "kavadministrators"
    assert _group(conf, "xpostmaster@mta.test") == "kavadministrators"  # a search, as in the guide


def _check(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kavsetup.cli", "config", "check", str(conf)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_config_check_warns_about_an_unanchored_admin_mask(tmp_path: Path) -> None:
    out = _check(_conf(tmp_path, r"postmaster@.*,^root@.*$,alice@example\.com$"))
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if "not anchored" in ln]
    assert len(warnings) == 2, out.stderr
    assert all(":2: [smtpscan.group:kavadministrators] Recipients:" in w for w in warnings)
    assert "'postmaster@.*'" in warnings[0] and r"'alice@example\\.com$'" in warnings[1]
    assert "'^postmaster@.*$'" in warnings[0]


def test_config_check_is_quiet_about_anchored_masks_and_other_groups(tmp_path: Path) -> None:
    conf = _conf(tmp_path, admin_masks(("root",)))
    out = _check(conf)
    assert out.returncode == 0 and "not anchored" not in out.stderr, out.stderr
