"""Debian roots built with mmdebstrap, cached by content under ~/.cache/kav4ms/roots/.

A root is built once per recipe (suite, packages, debconf answers, hook scripts: see spec.py) and
kept as a plain directory, because overlayfs needs a directory as its lower layer and a directory
makes a per-test copy cost milliseconds. The build goes to a temporary name and is renamed into
place only when complete, so an interrupted build is never mistaken for a cached root.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .spec import HOOKS, HOSTNAME, RootSpec

POLICY_RC_D = "#!/bin/sh\n# distro-matrix: never start a daemon from a maintainer script in a test root\nexit 101\n"


def cache_dir() -> Path:
    base = os.environ.get("KAV4MS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kav4ms"
    )
    return Path(base) / "roots"


def root_path(spec: RootSpec) -> Path:
    return cache_dir() / f"{spec.name}-{spec.key}"


def is_cached(spec: RootSpec) -> bool:
    return (root_path(spec).parent / f"{spec.name}-{spec.key}.json").exists() and root_path(spec).is_dir()


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class RootBuildError(RuntimeError):
    """mmdebstrap failed; the message carries the tail of its log."""


def ensure_root(spec: RootSpec, log: Path | None = None) -> tuple[Path, float]:
    """Return (path, seconds spent building: 0.0 when cached). Safe to call from parallel processes."""
    final = root_path(spec)
    meta = final.parent / f"{final.name}.json"
    with _lock(final.parent / f"{final.name}.lock"):
        if meta.exists() and final.is_dir():
            return final, 0.0
        started = time.monotonic()
        try:
            _build(spec, final, log)
        except RootBuildError:
            # One retry: a mirror hiccup should not fail a CI run; a real recipe error fails twice.
            time.sleep(5)
            _build(spec, final, log)
        took = time.monotonic() - started
        meta.write_text(json.dumps({"recipe": spec.recipe(), "build_seconds": round(took, 1)}, indent=1))
        _prune_old(spec)
        return final, took


def _prune_old(spec: RootSpec) -> None:
    """Drop roots of the same suite+MTA built from an older recipe: they can never be used again."""
    for old in cache_dir().glob(f"{spec.name}-*"):
        if old.name.startswith(f"{spec.name}-{spec.key}"):
            continue
        stem = old.name.split(".")[0]
        if len(stem) == len(spec.name) + 17:  # NAME-<16 hex>
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def _build(spec: RootSpec, final: Path, log: Path | None) -> None:
    tmp = final.parent / f".building-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    with tempfile.TemporaryDirectory(prefix="kavmatrix-build-") as work:
        preseed = Path(work) / "preseed"
        preseed.write_text("".join(line + "\n" for line in spec.flavour.preseed))
        hooks_dir = "/tmp/kavmatrix-hooks"
        q = shlex.quote
        essential = [
            # The host name must resolve before the MTA's postinst runs (Sendmail and Exim look it up).
            f'mkdir -p "$1{hooks_dir}" && cp -r {q(str(HOOKS))}/. "$1{hooks_dir}/"',
            *[f'cp {q(str(path))} "$1{hooks_dir}/{q(name)}"' for name, path in spec.flavour.extra.items()],
            f'chroot "$1" sh {hooks_dir}/hosts.sh {q(HOSTNAME)}',
        ]
        if spec.flavour.preseed:
            essential.append(f'chroot "$1" debconf-set-selections < {q(str(preseed))}')
        customize = [
            f'chroot "$1" sh {hooks_dir}/{q(name)} {" ".join(q(a) for a in args)}' for name, args in spec.hooks()
        ]
        customize.append(f'rm -rf "$1{hooks_dir}"')
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            "--mode=root",
            "--include=" + ",".join(spec.packages),
            *[f"--essential-hook={h}" for h in essential],
            *[f"--customize-hook={h}" for h in customize],
            spec.suite,
            str(tmp),
        ]
        # A private UTS namespace so the packages' maintainer scripts see the root's host name, not ours.
        cmd = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', HOSTNAME.split(".")[0], *argv]
        logfile = log or (Path(work) / "mmdebstrap.log")
        with open(logfile, "wb") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        if rc != 0:
            tail = logfile.read_text(errors="replace").splitlines()[-25:]
            shutil.rmtree(tmp, ignore_errors=True)
            raise RootBuildError(f"mmdebstrap {spec.name} failed (rc={rc}):\n" + "\n".join(tail))
    # mmdebstrap removes its own policy-rc.d at the end; ours stays, so that `dpkg -i` of our package
    # inside the root never starts a daemon outside the test's namespaces.
    policy = tmp / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
