"""aveclient: scan files through aveserver from the command line.

``aveclient -p SOCKET -s FILE...`` with the historical exit codes: 0 clean, 1 cannot connect,
2 unknown viral code (SUSPICIOUS), 3 suspicious (WARNING), 4 infected, 5 all disinfected,
6 password-protected, 7 system error, 8 corrupted / I-O error, 9 bad parameters.  With several
files the exit code is the one of the worst result.  Output: one 6.8.1 line per object found
(``"file" INFECTED EICAR-Test-File``), ``"file" OK`` for a clean file, so the first line names
INFECTED when a file is infected.
"""

from __future__ import annotations

import argparse
import os
import sys

from runtime.fsutil import atomic_write

from .client import AveClient, AveServerError, AveServerUnavailable
from .verdict import (
    EXIT_BAD_PARAMETERS,
    EXIT_CANNOT_CONNECT,
    EXIT_CODES,
    EXIT_SYSTEM_ERROR,
    SEVERITY,
    Status,
)

DEFAULT_SOCKET = "/var/run/aveserver"
EXIT_IO = 8


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"aveclient: {message}\n")
        sys.exit(EXIT_BAD_PARAMETERS)


def _socket_from_config(path: str) -> str:
    from runtime.config import ConfigError, load_config

    try:
        return str(load_config(path).get("path", "LocalSocketPath"))
    except (ConfigError, KeyError) as exc:
        sys.stderr.write(f"aveclient: {exc}\n")
        sys.exit(EXIT_BAD_PARAMETERS)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="aveclient", description="Scan files with aveserver.")
    ap.add_argument("-p", dest="socket", help=f"aveserver socket (default: [path] LocalSocketPath or {DEFAULT_SOCKET})")
    ap.add_argument("-c", dest="config", help="read the socket path from this kav4mailservers.conf")
    ap.add_argument("-s", dest="files", nargs="+", metavar="FILE", required=True, help="files to scan")
    ap.add_argument("--cure", action="store_true",
                    help="disinfect: replace cured files in place, delete files whose cure is deletion")
    ap.add_argument("-q", dest="quiet", action="store_true", help="print nothing, only the exit code")
    ap.add_argument("-t", dest="timeout", type=float, default=120.0, help="seconds to wait for aveserver")
    args = ap.parse_args(argv)
    sock = args.socket or (_socket_from_config(args.config) if args.config else DEFAULT_SOCKET)
    worst_code, worst_sev = 0, -1
    client = AveClient(sock, timeout=args.timeout)

    def note(code: int, sev: int) -> None:
        nonlocal worst_code, worst_sev
        if sev > worst_sev:
            worst_code, worst_sev = code, sev

    with client:
        for path in args.files:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                if not args.quiet:
                    print(f'"{path}" ERROR {exc.strerror}')
                note(EXIT_IO, SEVERITY[Status.CORRUPTED])
                continue
            try:
                v = client.scan_bytes(data, path, cure=args.cure)
            except AveServerUnavailable as exc:
                sys.stderr.write(f"aveclient: {exc}\n")
                return EXIT_CANNOT_CONNECT
            except AveServerError as exc:
                sys.stderr.write(f"aveclient: {path}: {exc}\n")
                note(EXIT_SYSTEM_ERROR, SEVERITY[Status.ERROR])
                continue
            if not args.quiet:
                for o in v.objects or []:
                    print(o.report_line())
                if not v.objects:
                    print(f'"{path}" OK')
            if args.cure and v.status is Status.CURED:
                try:
                    if v.deleted:
                        os.unlink(path)
                    elif v.cured is not None:
                        atomic_write(path, v.cured)
                except OSError as exc:
                    sys.stderr.write(f"aveclient: {path}: cannot write the disinfected file: {exc}\n")
                    note(EXIT_SYSTEM_ERROR, SEVERITY[Status.ERROR])
                    continue
            note(EXIT_CODES[v.status], SEVERITY[v.status])
    return worst_code


if __name__ == "__main__":
    sys.exit(main())
