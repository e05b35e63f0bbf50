"""``kavsetup reconfigure``: new answers on an integrated system as one locked, journaled change.

Why "reverse everything, then apply the new plan" rather than a patch between two plans: the
journal's byte-exact promise (uninstall gives back the original) holds only if every before-image
is the *original* file, so the new integration must be computed from, and journaled against, the
system as it was before us.  To show the diff *before* anything is written, that original is
rebuilt in memory: the journal's reversal (the same ``_revert_step`` uninstall uses) runs over a
:class:`View`, and detection, site facts and the plan all read through that overlay
(:class:`PristineRoot`, :class:`PristineFS`).  The diff printed is then "what is on disk now"
against "what the new plan will leave", path by path.

Applying: under the root lock the old integration is reversed (journal state ``rolling-back``),
then the new plan is applied (``installing`` -> ``installed``).  If the new plan fails it is
rolled back by the transaction and the old plan (rebuilt from the journal's Edit data) is applied
again, so the admin ends with the old integration or the new one.  A crash in between leaves a
journal that ``kavsetup recover`` completes or rolls back to the original — mail flows (unscanned)
until ``kavsetup install``/``reconfigure`` is run again; docs/setup.md says so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from kavsetup.detect.rootfs import RootFS
from kavsetup.integrate.edits import Change, Plan, edit_from_json
from kavsetup.integrate.files import Image, Root, View
from kavsetup.integrate.transaction import Outcome, Transaction


def pristine_overlay(tx: Transaction) -> dict[PurePosixPath, Image]:
    """Every path the journal touched, as it was before the integration (nothing written)."""
    view = View(tx.root)
    for step in reversed(tx.journal.doc["steps"]):
        if step["status"] != "reverted":
            tx._revert_step(step, view)
    return dict(view.overlay)


class PristineRoot(Root):
    """The root as it was before the integration: reads go through ``overlay``; no writes."""

    def __init__(self, root: Root, overlay: dict[PurePosixPath, Image]) -> None:
        super().__init__(root.path)
        self.overlay = overlay

    def read(self, path: PurePosixPath | str) -> Image:
        return self.overlay.get(PurePosixPath(path)) or super().read(path)

    def put(self, path: PurePosixPath | str, image: Image) -> None:  # pragma: no cover - guard
        raise RuntimeError("PristineRoot is read-only")


class PristineFS(RootFS):
    """Detection's view of the same pre-integration tree (files and directories we created are
    absent, files we edited hold their original text)."""

    def __init__(self, root: Path, overlay: dict[PurePosixPath, Image]) -> None:
        super().__init__(root)
        self.overlay = overlay

    def _image(self, path: PurePosixPath | str) -> Image | None:
        return self.overlay.get(PurePosixPath(self.resolve(path).target))

    def lexists(self, path: PurePosixPath | str) -> bool:
        img = self.overlay.get(PurePosixPath(path))
        return img.exists if img is not None else super().lexists(path)

    def exists(self, path: PurePosixPath | str) -> bool:
        img = self._image(path)
        return img.exists if img is not None else super().exists(path)

    def is_file(self, path: PurePosixPath | str) -> bool:
        img = self._image(path)
        return img.kind == "file" if img is not None else super().is_file(path)

    def is_dir(self, path: PurePosixPath | str) -> bool:
        img = self._image(path)
        return img.kind == "dir" if img is not None else super().is_dir(path)

    def read_text(self, path: PurePosixPath | str, *, required: bool = False) -> str | None:
        img = self._image(path)
        if img is None or img.kind not in ("file", "absent"):
            return super().read_text(path, required=required)
        if img.kind == "absent":
            if required:
                self.problem(path, "not found")
            return None
        return img.data.decode("utf-8", errors="replace")

    def read_bytes_head(self, path: PurePosixPath | str, size: int = 65536) -> bytes | None:
        img = self._image(path)
        if img is None:
            return super().read_bytes_head(path, size)
        return img.data[:size] if img.kind == "file" else None


def preview(root: Root, pristine: PristineRoot, plan: Plan) -> tuple[list[str], str]:
    """(summaries, diff): what is on disk now against what the new plan leaves."""
    view = View(pristine)
    summaries, _ = plan.preview(view)
    paths = sorted(set(pristine.overlay) | set(view.overlay))
    final = {p: view.overlay.get(p) or pristine.read(p) for p in paths}
    diff = "".join(Change(p, root.read(p), final[p]).diff() for p in paths if root.read(p) != final[p])
    return summaries, diff


def apply(tx: Transaction, plan: Plan, verify: Callable[[], tuple[bool, str]] | None) -> Outcome:
    """Reverse the old integration, apply ``plan``; on failure put the old one back."""
    old: dict[str, Any] = tx.journal.load()
    notes = tx._revert_all("rolling-back")
    out = tx.apply(plan, verify=verify)
    out.notes[:0] = notes
    if out.ok:
        tx.journal.doc["reconfigured_from"] = {"mta": old["mta"], "settings": old["settings"],
                                               "started": old["started"]}
        tx.journal.save()
        return Outcome(True, f"reconfigured: the {old['mta']} integration was replaced by the {plan.mta} one",
                       out.notes)
    back = Plan(old["mta"], tuple(edit_from_json(st["edit"]) for st in old["steps"]), tuple(old.get("notes", ())),
                old["settings"], tuple((e["name"], e["address"]) for e in old.get("services", ())))
    again = tx.apply(back)
    state = "the previous integration is back in place" if again.ok else f"restoring it failed too: {again.message}"
    return Outcome(False, f"{out.message}; {state}", out.notes + again.notes)
