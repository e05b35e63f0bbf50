"""Apply a Plan step by step under a journal; roll back, uninstall, recover.

Protocol per step k (certbot's reverter, made crash-safe):
  1. compute the step's changes from what is on disk now;
  2. store before-images (blobs) and append the step as "pending" with before/after
     fingerprints; fsync the journal;
  3. write each after-image (temp + fsync + rename);
  4. mark the step "done"; fsync the journal.
A crash anywhere leaves each touched path equal to its before- or after-fingerprint, so
``recover`` can always tell what to undo.  Reversal of a path, newest step first:
  * still equal to the after-fingerprint -> restore the before-image byte for byte
    (content, mode, owner);
  * equal to the before-fingerprint -> nothing to do (never applied, or already undone);
  * anything else (the admin edited it) -> the edit's own semantic ``unapply``: remove what we
    added, keep the admin's changes, report what could not be decided.

Only one kavsetup may work on a root at a time: an exclusive ``flock`` on the root directory
itself (no lock file, so the tree stays byte-identical after uninstall).

``KAVSETUP_FAIL_AFTER_STEP=k`` (tests only) kills the process right after step k is journaled
as done — the same state a ``kill -9`` or power loss would leave.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from kavsetup import services
from kavsetup.integrate.edits import Edit, EditError, EnsureDir, Plan, edit_from_json
from kavsetup.integrate.files import Image, Root, View
from kavsetup.integrate.journal import Journal

FAIL_ENV = "KAVSETUP_FAIL_AFTER_STEP"


class LockBusy(Exception):
    pass


class SimulatedCrash(BaseException):
    """Raised by the in-process failure hook: not an Exception, so nothing cleans up."""


@contextmanager
def root_lock(root: Root) -> Iterator[None]:
    fd = os.open(root.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LockBusy(f"{root.path}: another kavsetup run holds the lock; try again later") from exc
        yield
    finally:
        os.close(fd)


@dataclass
class Outcome:
    ok: bool
    message: str
    notes: list[str] = field(default_factory=list)
    diff: str = ""


def _default_crash(step: int) -> None:
    os._exit(75)


class Transaction:
    def __init__(self, root: Root, *, fail_after: int | None = None,
                 crash: Callable[[int], None] | None = None) -> None:
        self.root = root
        self.journal = Journal(root)
        env = os.environ.get(FAIL_ENV, "")
        self.fail_after = fail_after if fail_after is not None else (int(env) if env.isdigit() else None)
        self.crash = crash or _default_crash

    # -- state --------------------------------------------------------------------------
    def pending_state(self) -> str:
        """"" (nothing installed), "installed", or an interrupted state."""
        if not self.journal.exists():
            return ""
        return self.journal.load()["state"]

    # -- install -------------------------------------------------------------------------
    def apply(self, plan: Plan, verify: Callable[[], tuple[bool, str]] | None = None) -> Outcome:
        j = self.journal
        j.create(plan.mta, plan.settings, list(plan.notes))
        for k, edit in enumerate(plan.edits, start=1):
            try:
                changes = edit.compute(View(self.root))
            except (EditError, OSError) as exc:
                notes = self._revert_all("rolling-back")
                return Outcome(False, f"step {k} ({edit.summary()}) failed: {exc}; rolled back", notes)
            step: dict[str, Any] = {"n": k, "summary": edit.summary(), "edit": edit.to_json(),
                                    "status": "pending", "changes": []}
            for ch in changes:
                if not ch.changed:
                    continue
                j.put_blob(ch.before)
                step["changes"].append({"path": str(ch.path), "before": ch.before.fingerprint(),
                                        "after": ch.after.fingerprint()})
            j.steps.append(step)
            j.save()
            try:
                for ch in changes:
                    if ch.changed:
                        self.root.put(ch.path, ch.after)
            except OSError as exc:
                notes = self._revert_all("rolling-back")
                return Outcome(False, f"step {k} ({edit.summary()}) failed: {exc}; rolled back", notes)
            step["status"] = "done"
            j.save()
            if self.fail_after == k:
                self.crash(k)
        if verify is not None:
            ok, why = verify()
            if not ok:
                notes = self._revert_all("rolling-back")
                return Outcome(False, f"verification failed: {why}; rolled back, nothing changed", notes)
            j.doc["verification"] = why
        # The daemons the MTA will hand mail to answer before it is pointed at them (the caller
        # reloads it after this returns); one that cannot be started rolls the integration back.
        started: list[dict[str, Any]] = j.doc.setdefault("services", [])
        ok, notes = services.start(self.root, plan.services, started, j.save)
        if not ok:
            why = notes.pop()
            notes += self._revert_all("rolling-back")
            return Outcome(False, f"{why}; rolled back, nothing changed", notes)
        j.state = "installed"
        return Outcome(True, "installed", notes)

    # -- reversal --------------------------------------------------------------------------
    def _revert_step(self, step: dict[str, Any], view: View | None) -> list[str]:
        """Undo one step; with ``view`` only compute (dry-run), else write."""
        edit: Edit = edit_from_json(step["edit"])
        notes: list[str] = []
        for ch in reversed(step["changes"]):
            path = PurePosixPath(ch["path"])
            current = view.get(path) if view else self.root.read(path)
            before = self.journal.image(ch["before"])
            if current.matches(ch["after"]):
                target: Image | None = before
            elif current.matches(ch["before"]):
                continue
            else:
                undo = edit.unapply(path, current, before)
                notes.extend(undo.notes)
                target = undo.image
            if target is None or target == current:
                continue
            if view is not None:
                view.set(path, target)
                continue
            if target.kind == "absent" and isinstance(edit, EnsureDir):
                may, why = edit.before_removal(self.root.host(path))
                notes.extend(why)
                if not may:
                    continue
            try:
                self.root.put(path, target)
            except OSError as exc:
                notes.append(f"{path}: could not restore: {exc}")
        return notes

    def _revert_all(self, state: str, keep_services: bool = False) -> list[str]:
        """Undo every step; then stop the daemons the install started, unless ``keep_services``
        (uninstall: the caller stops them once the MTA no longer hands them mail)."""
        j = self.journal
        j.state = state
        notes: list[str] = []
        for step in reversed(j.steps):
            if step["status"] == "reverted":
                continue
            notes.extend(self._revert_step(step, None))
            step["status"] = "reverted"
            j.save()
        if not keep_services:
            notes.extend(services.release(self.root, j.doc.get("services", [])))
        notes.extend(j.remove())
        return notes

    def uninstall(self, dry_run: bool = False) -> Outcome:
        if not self.journal.exists():
            return Outcome(True, "kav4mailservers is not integrated with any MTA here; nothing to uninstall")
        doc = self.journal.load()
        if dry_run:
            view = View(self.root)
            first: dict[PurePosixPath, Image] = {}
            notes: list[str] = []
            for step in reversed(doc["steps"]):
                if step["status"] == "reverted":
                    continue
                for ch in step["changes"]:
                    p = PurePosixPath(ch["path"])
                    first.setdefault(p, view.get(p))
                notes.extend(self._revert_step(step, view))
            from kavsetup.integrate.edits import Change
            diff = "".join(Change(p, b, view.get(p)).diff() for p, b in first.items() if view.get(p) != b)
            return Outcome(True, "dry run: nothing changed", notes, diff)
        notes = self._revert_all("uninstalling", keep_services=True)
        return Outcome(True, f"uninstalled the {doc['mta']} integration", notes)

    def recover(self) -> Outcome:
        if not self.journal.exists():
            if self.journal.sweep_unsaved():
                return Outcome(True, "an install killed before its first step was found; its temporary "
                               "journal was removed and nothing else had changed")
            return Outcome(True, "no interrupted run found; nothing to recover")
        doc = self.journal.load()
        state = doc["state"]
        if state == "installed":
            return Outcome(True, "installation is complete; nothing to recover")
        if state == "installing":
            notes = self._revert_all("rolling-back")
            return Outcome(True, "an interrupted install was found and rolled back; the system is as before", notes)
        notes = self._revert_all(state)
        what = "uninstall" if state == "uninstalling" else "roll-back"
        return Outcome(True, f"an interrupted {what} was found and completed", notes)
