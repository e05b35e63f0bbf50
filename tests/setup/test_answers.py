"""Answers files (issue 16): YAML round trip keeping the admin's comments, the historical
autoanswers.conf form, one-line errors naming file, line and key; reconfigure as one change."""

from __future__ import annotations

from pathlib import Path

import pytest

from kavsetup import answers
from kavsetup.integrate.settings import SettingsError
from tests.support.integration import diff_snapshots, snapshot_paths
from tests.support.setup import WATCH, config_only_root, debian_postfix_root, journal, run


def test_save_then_hand_edit_then_save_again_keeps_the_admins_comments(tmp_path: Path) -> None:
    f = tmp_path / "setup.yaml"
    answers.save_yaml(f, {"mta": "postfix", "filter_port": 10025, "admin_address": "a@example.org"})
    text = f.read_text()
    assert "# Mail server to integrate with (guide 3.4)\nmta: postfix\n" in text
    assert answers.load(f) == {"mta": "postfix", "filter_port": 10025, "admin_address": "a@example.org"}
    edited = text.replace("filter_port: 10025", "filter_port: 10125   # moved: amavis took 10025 (ticket 42)")
    edited = "# Site: mx1, owner: mail team\n" + edited
    f.write_text(edited)
    answers.save_yaml(f, {**answers.load(f), "admin_address": "b@example.org", "protocol": "smtp"})
    again = f.read_text()
    assert again.startswith("# Site: mx1, owner: mail team\n")
    assert "filter_port: 10125   # moved: amavis took 10025 (ticket 42)" in again
    assert "admin_address: b@example.org" in again and "protocol: smtp" in again
    assert f.stat().st_mode & 0o777 == 0o600


def test_autoanswers_conf_gives_the_same_answers_as_yaml(tmp_path: Path) -> None:
    conf = tmp_path / "autoanswers.conf"
    conf.write_text("# written by a 5.x front-end\n"
                    "MTA=postfix\n"
                    "MAILSERVER_CONFIG=\"/etc/postfix/main.cf\"\n"
                    "PROTOCOL=smtp\n"
                    "\n"
                    "ADMIN_EMAIL='av@example.org'\n"
                    "filter_port=10125\n"
                    "CHAIN=no\n")
    assert answers.load(conf) == {"mta": "postfix", "mta_config": "/etc/postfix/main.cf", "protocol": "smtp",
                                  "admin_address": "av@example.org", "filter_port": 10125, "chain": False}


@pytest.mark.parametrize(("name", "text", "message"), [
    ("a.conf", "MTA=postfix\nPORTT=1\n", "a.conf:2: PORTT: unknown answer"),
    ("a.conf", "MTA=postfix\nFILTER_PORT=ten\n", "a.conf:2: FILTER_PORT: 'ten' is not a number"),
    ("a.conf", "just words\n", "a.conf:1: expected KEY=value"),
    ("a.yaml", "mta: postfix\nprotocol: smtpx\n", "a.yaml:2: protocol: 'smtpx' is not one of lmtp, smtp"),
    ("a.yaml", "mta: postfix\n\nfilter_port: x\n", "a.yaml:3: filter_port: expected a number"),
    ("a.yaml", "mta: sendmial\n", "a.yaml:1: mta: 'sendmial' is not one of"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, name: str, text: str, message: str) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(SettingsError) as exc:
        answers.load(f)
    assert str(exc.value).startswith(f"{tmp_path}/{message}"), str(exc.value)
    assert "\n" not in str(exc.value)


def test_autoanswers_replay_gives_the_same_journal_as_yaml(tmp_path: Path) -> None:
    yaml_file = tmp_path / "setup.yaml"
    answers.save_yaml(yaml_file, {"mta": "postfix", "mta_config": "/etc/postfix/main.cf", "protocol": "smtp",
                                  "admin_address": "av@example.org", "domains": r"example\.org"})
    conf = tmp_path / "autoanswers.conf"
    conf.write_text("MTA=postfix\nMTA_CONFIG=/etc/postfix/main.cf\nPROTOCOL=smtp\nADMIN_ADDRESS=av@example.org\n"
                    "LICENSE_DOMAINS=example\\.org\n")
    a = config_only_root(tmp_path / "a")
    b = config_only_root(tmp_path / "b")
    assert run("setup", "--root", str(a), "--answers", str(yaml_file)).returncode == 0
    res = run("install", "--root", str(b), "--answers", str(conf))
    assert res.returncode == 0, res.stderr
    ja, jb = journal(a), journal(b)
    assert ja.pop("verification").replace(str(a), "ROOT") == jb.pop("verification").replace(str(b), "ROOT")
    assert ja == jb


def test_reconfigure_changes_the_port_in_one_change_and_uninstall_restores_the_original(tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    first.write_text("protocol: lmtp\nadmin_address: av@example.org\n")
    change = tmp_path / "change.yaml"
    change.write_text("filter_port: 10125\nreinject_port: 10126\nprotocol: smtp\n")
    with debian_postfix_root(tmp_path / "r") as root:
        original = snapshot_paths(root, WATCH)
        assert run("setup", "--root", str(root), "--answers", str(first)).returncode == 0
        installed = snapshot_paths(root, WATCH)
        # dry run: the diff against what is installed now, nothing written
        res = run("reconfigure", "--root", str(root), "--answers", str(change), "--dry-run")
        assert res.returncode == 0, res.stderr
        assert "-content_filter = kavscan:[127.0.0.1]:10025\n+content_filter = kavscan:[127.0.0.1]:10125" in res.stdout
        assert "-Protocol=lmtp\n+Protocol=smtp" in res.stdout
        assert diff_snapshots(installed, snapshot_paths(root, WATCH)) == []
        res = run("reconfigure", "--root", str(root), "--answers", str(change))
        assert res.returncode == 0, res.stderr
        assert "postfix check passed" in res.stdout
        main_cf = (root / "etc/postfix/main.cf").read_text()
        assert "content_filter = kavscan:[127.0.0.1]:10125" in main_cf and "10025" not in main_cf
        doc = journal(root)
        assert doc["state"] == "installed" and doc["reconfigured_from"]["settings"]["filter_port"] == 10025
        assert doc["settings"]["admin_address"] == "av@example.org"     # kept from the first answers
        # the same answers again: nothing to change
        res = run("reconfigure", "--root", str(root), "--answers", str(change))
        assert res.returncode == 0 and "nothing to change" in res.stdout
        assert run("uninstall", "--root", str(root)).returncode == 0
        assert diff_snapshots(original, snapshot_paths(root, WATCH)) == []


def test_reconfigure_on_a_root_not_integrated_is_refused(tmp_path: Path) -> None:
    root = config_only_root(tmp_path)
    res = run("reconfigure", "--root", str(root))
    assert res.returncode == 2 and "run 'kavsetup setup' first" in res.stderr


def test_reconfigure_to_another_mta_that_fails_verification_puts_the_old_integration_back(tmp_path: Path) -> None:
    """Switching MTA (qmail -> Postfix) is one change: Postfix's checker cannot run in this
    fixture root (no libc to chroot into), so the new plan is rolled back and the qmail
    integration is applied again — the admin never ends with neither."""
    from tests.support.integration import snapshot
    from tests.support.setup import fixture_root

    root = fixture_root("debian-12-postfix-qmail", tmp_path)
    original = snapshot(root)
    assert run("setup", "--root", str(root), "--mta", "qmail", "--non-interactive").returncode == 0
    installed = snapshot(root)
    res = run("reconfigure", "--root", str(root), "--mta", "postfix")
    assert res.returncode == 1
    assert "verification failed" in res.stderr and "the previous integration is back in place" in res.stderr
    assert journal(root)["mta"] == "qmail"
    assert [d for d in diff_snapshots(installed, snapshot(root)) if "journal.json" not in d] == []
    assert run("uninstall", "--root", str(root)).returncode == 0
    assert diff_snapshots(original, snapshot(root)) == []
