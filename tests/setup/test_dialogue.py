"""``kavsetup setup`` through a real pseudo-terminal (issue 16): the questions guide 3.4 needs, and
nothing written before the confirmation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.integration import diff_snapshots, snapshot, snapshot_paths
from tests.support.setup import (
    CONFIRM,
    WATCH,
    answer_all,
    config_only_root,
    debian_postfix_root,
    finish,
    fixture_root,
    journal,
    prompt_re,
    run,
    spawn,
    tool_questions,
    transcript,
)

pexpect = pytest.importorskip("pexpect")

CONF = "etc/kav/5.5/kav4mailservers/kav4mailservers.conf"
#: The questions of the bare-root dialogue, in order (no MTA recognised, Postfix's files present).
BARE_ORDER = ["mta", "mta_config", "postfix_mode", "protocol", "domains", "admin_address", *tool_questions()]
BARE_REPLIES = {"update_now": "no", "mta": "postfix", "mta_config": "/etc/postfix/main.cf", "protocol": "smtp",
                "domains": r"example\.org,mail\.example\.org", "admin_address": "av@example.org"}


def test_full_dialogue_on_a_postfix_root_then_replay_gives_the_identical_journal(tmp_path: Path) -> None:
    saved = tmp_path / "setup.yaml"
    with debian_postfix_root(tmp_path / "a") as root:
        original = snapshot_paths(root, WATCH)
        child = spawn("setup", "--root", str(root), "--save-answers", str(saved))
        child.expect(r"Mail server: postfix 3\.\d+\.\d+ \(active\)")
        child.expect(r"Version check: postfix 3\.\d+\.\d+ \(from \S+\) meets postfix 1\.0 or higher")
        asked = answer_all(child, {"protocol": "smtp", "domains": r"example\.org", "admin_address": "av@example.org",
                                   "update_now": "no"})
        assert finish(child) == 0, transcript(child)
        assert "postfix check passed" in transcript(child)
        # Detection found Postfix, its version and its files: only the real choices were asked.
        assert asked[:4] == ["postfix_mode", "protocol", "domains", "admin_address"], asked
        assert "mta" not in asked and "mta_config" not in asked
        conf = (root / CONF).read_text()
        assert "Protocol=smtp" in conf and "AdminAddress=av@example.org" in conf
        assert "LicenseDomains=example\\.org" in conf
        installed = snapshot_paths(root, WATCH)
        first = journal(root)
        assert run("uninstall", "--root", str(root)).returncode == 0
        assert diff_snapshots(original, snapshot_paths(root, WATCH)) == []

    # The same answers from the saved YAML, no terminal, a fresh root: nothing asked, same result.
    with debian_postfix_root(tmp_path / "b") as fresh:
        res = run("setup", "--root", str(fresh), "--answers", str(saved))
        assert res.returncode == 0, res.stderr
        assert journal(fresh) == first
        # Every file byte-identical; the journal differs only in its time stamp (compared above).
        assert [d for d in diff_snapshots(installed, snapshot_paths(fresh, WATCH)) if "journal.json" not in d] == []


def test_two_mtas_the_dialogue_asks_which_and_help_cites_the_guide(tmp_path: Path) -> None:
    root = fixture_root("debian-12-postfix-qmail", tmp_path)
    before = snapshot(root)
    child = spawn("setup", "--root", str(root))
    child.expect("Mail server: postfix 3.7.11 \\(active\\)")
    child.expect(prompt_re("mta"))
    assert "[postfix]" in child.after
    child.sendline("?")
    child.expect(r"guide 3\.4\)")
    child.expect(prompt_re("mta"))
    child.sendline("smail")
    child.expect_exact("(guide 3.4 stops the installer on an invalid answer")
    child.expect(prompt_re("mta"))
    child.sendline("qmail")
    asked = answer_all(child, {"admin_address": "root@example.org", "update_now": "no"})
    assert finish(child) == 0
    # qmail has no spawn/daemon or protocol choice and no ports: not asked.
    assert "postfix_mode" not in asked and "protocol" not in asked
    assert (root / "var/qmail/bin/queue.kav55").exists()
    assert run("uninstall", "--root", str(root)).returncode == 0
    assert diff_snapshots(before, snapshot(root)) == []


def test_invalid_paths_are_reasked_and_a_refused_confirmation_changes_nothing(tmp_path: Path) -> None:
    root = config_only_root(tmp_path)
    before = snapshot(root)
    child = spawn("setup", "--root", str(root))
    child.expect("Mail server: none recognised")
    asked = answer_all(child, {**BARE_REPLIES, "mta_config": ["/etc/postfix/nope.cf", "etc/postfix/main.cf",
                                                               "/etc/postfix/master.cf", "/etc/postfix/main.cf"]},
                       confirm="no")
    assert finish(child) == 1
    assert asked == BARE_ORDER[:1] + ["mta_config"] * 4 + BARE_ORDER[2:]
    text = transcript(child)
    assert text.count("not accepted") == 3 and "not applied: nothing was changed" in text
    assert diff_snapshots(before, snapshot(root)) == []


def test_the_reasons_for_a_reasked_path(tmp_path: Path) -> None:
    root = config_only_root(tmp_path)
    child = spawn("setup", "--root", str(root), "--dry-run")
    child.expect(prompt_re("mta"))
    child.sendline("postfix")
    for answer, reason in (("/etc/postfix/nope.cf", "no such file in"),
                           ("etc/postfix/main.cf", "starting with /"),
                           ("/etc/postfix/master.cf", "does not look like postfix's configuration")):
        child.expect(prompt_re("mta_config"))
        child.sendline(answer)
        child.expect(f"not accepted: .*{reason}")
    child.expect(prompt_re("mta_config"))
    child.sendline("?")
    child.expect(r"\(guide 3\.4\)")
    child.sendintr()
    assert finish(child) == 130


@pytest.mark.parametrize("stop", [*BARE_ORDER, "confirm"])
def test_ctrl_c_at_each_question_leaves_the_root_byte_identical(tmp_path: Path, stop: str) -> None:
    root = config_only_root(tmp_path)
    before = snapshot(root)
    child = spawn("setup", "--root", str(root))
    for key in BARE_ORDER:
        child.expect(prompt_re(key))
        if key == stop:
            break
        child.sendline(BARE_REPLIES.get(key, ""))
    else:
        child.expect(CONFIRM)
    child.sendintr()
    child.expect("cancelled: nothing was changed")
    assert finish(child) == 130
    assert diff_snapshots(before, snapshot(root)) == []


def test_end_of_input_mid_dialogue_changes_nothing(tmp_path: Path) -> None:
    root = config_only_root(tmp_path)
    before = snapshot(root)
    child = spawn("setup", "--root", str(root))
    child.expect(prompt_re("mta"))
    child.sendline("postfix")
    child.expect(prompt_re("mta_config"))
    child.sendeof()
    assert finish(child) == 130
    assert diff_snapshots(before, snapshot(root)) == []


def test_install_on_a_terminal_runs_the_dialogue(tmp_path: Path) -> None:
    root = config_only_root(tmp_path)
    child = spawn("install", "--root", str(root))
    asked = answer_all(child, BARE_REPLIES)
    assert finish(child) == 0
    assert asked == BARE_ORDER
    assert "Protocol=smtp" in (root / CONF).read_text()


def test_install_without_a_terminal_names_the_missing_answers(tmp_path: Path) -> None:
    root = config_only_root(tmp_path)
    before = snapshot(root)
    res = run("install", "--root", str(root))        # stdin is /dev/null: never waits
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "mta (--mta or answers key 'mta')" in lines[0]
    assert "mta_config (--mta-config or answers key 'mta_config')" in lines[0]
    assert diff_snapshots(before, snapshot(root)) == []
    # Detected but the configuration file missing: only that one is named.
    res = run("install", "--root", str(root), "--mta", "postfix")
    assert res.returncode == 2 and "mta_config" in res.stderr and "mta (" not in res.stderr


def test_licensemanager_and_keepup2date_are_used_only_when_installed(tmp_path: Path) -> None:
    """Guide 3.3 steps 2-4 go through our own programs; where another build lacks them the
    dialogue says so and skips the questions instead of failing."""
    from kavsetup.conversation import tool

    root = fixture_root("debian-12-postfix", tmp_path)
    child = spawn("setup", "--root", str(root), "--dry-run")
    asked = answer_all(child, {"key_file": [str(tmp_path / "missing.key"), ""], "update_now": "no"})
    assert finish(child) == 0
    text = transcript(child)
    if tool("licensemanager", "runtime.license") is None:
        assert "licensemanager is not installed here; skipped" in text and "key_file" not in asked
    else:
        # a key file that does not exist is re-asked; empty skips with the guide's warning (3.3)
        assert asked.count("key_file") == 2 and "missing.key: no such file" in text
        assert "work with the application will be" in text
    if tool("keepup2date", "runtime.updater") is None:
        assert "keepup2date is not installed here" in text and "update_source" not in asked
    else:
        assert {"update_source", "proxy", "update_now"} <= set(asked)
    assert "dry run: nothing changed" in text


def test_settings_of_an_earlier_installation_are_offered_and_imported(tmp_path: Path) -> None:
    """Guide 3.2/1.1: a 5.0 configuration on the machine is offered for import; its settings seed
    the new kav4mailservers.conf inside the same journaled change (uninstall removes it again)."""
    root = config_only_root(tmp_path)
    old = root / "etc/kav/5.0/kav4mailservers/kav4mailservers.conf"
    old.parent.mkdir(parents=True)
    old.write_text("[smtpscan.general]\nNotifyFromAddress=av@example.com\n"
                   "[smtpscan.group:sales]\nRecipients=*@sales.example.com\nCheck=true\n")
    before = snapshot(root)
    child = spawn("setup", "--root", str(root))
    asked = answer_all(child, {**BARE_REPLIES, "import_from": ["/etc/nothing.conf", ""]})
    assert finish(child) == 0, transcript(child)
    text = transcript(child)
    assert "Found an earlier installation's configuration: /etc/kav/5.0/kav4mailservers/kav4mailservers.conf" in text
    assert asked.count("import_from") == 2 and "/etc/nothing.conf: no such file" in text
    conf = (root / CONF).read_text()
    assert "imported from 5.0 /etc/kav/5.0/kav4mailservers/kav4mailservers.conf" in conf
    assert "[smtpscan.group:sales]" in conf and "Recipients=.*@sales\\.example\\.com" in conf
    assert "Protocol=smtp" in conf                       # and the answers on top of it
    assert run("uninstall", "--root", str(root)).returncode == 0
    assert diff_snapshots(before, snapshot(root)) == []


def test_a_taken_port_is_asked_for_with_the_next_free_one_as_default(tmp_path: Path) -> None:
    """Guide 4.4.3's port 10025 already used by another filter's listener in master.cf: the
    dialogue says so and asks, re-asking a taken port or a non-number with the reason."""
    root = config_only_root(tmp_path)
    master = root / "etc/postfix/master.cf"
    master.write_text(master.read_text() + "127.0.0.1:10025 inet n - n - - smtpd\n  -o content_filter=\n")
    child = spawn("setup", "--root", str(root))
    asked = answer_all(child, {**BARE_REPLIES, "filter_port": ["10025", "ten", ""]})
    assert finish(child) == 0, transcript(child)
    text = transcript(child)
    assert "Port 10025 (filter_port) is already in use here." in text
    assert "port 10025 is already in use here" in text and "'ten' is not a number" in text
    assert asked.count("filter_port") == 3 and "reinject_port" not in asked
    assert "Port the MTA hands mail to smtpscanner on [10027]" in text
    assert "content_filter = kavscan:[127.0.0.1]:10027" in (root / "etc/postfix/main.cf").read_text()
