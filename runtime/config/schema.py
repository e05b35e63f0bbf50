"""The one schema of ``kav4mailservers.conf``.

Every section and key the guide names (4.1, 4.4.5, 5.1-5.4, 6.1-6.8) plus those attested by
third-party tools of the time (docs/formats.md), each with its type, default and
the guide section it comes from.  The runtime loads through this module and the installer renders
its template from it, so defaults live in exactly one place.

Where the guide gives no default we chose the safe one and say why in ``note``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.config import values as v
from runtime.layout import HOST

#: Object statuses that carry per-status group keys (guide 6.1.3, 6.2.2; format notes).
STATUSES: tuple[str, ...] = (
    "Infected",
    "Suspicious",
    "Warning",
    "Corrupted",
    "Protected",
    "Error",
    "Cured",
    "CureFailed",
    "Filtered",
)

#: Per-status attributes: ``<Status><Attr>`` overrides the generic ``<Attr>`` (guide 5.2.1, 6.1.3-6.1.4).
GROUP_ATTRS: tuple[str, ...] = (
    "Quarantine",
    "AdminNotify",
    "AdminAction",
    "AdminAttachReport",
    "SenderNotify",
    "RecipientNotify",
    "RecipientAttachReport",
    "RecipientAction",
)

ROLES: tuple[str, ...] = ("admin", "sender", "recipient")
EVENTS: tuple[str, ...] = tuple(s.lower() for s in STATUSES)

# Honest identity (issue 11): X-Anti-Virus headers and notices name THIS project in the guide's
# format ("<name> version 5.5/RELEASE"); the guide printed "Kaspersky Anti-Virus for Unix Mail
# Servers", which would make recipients believe a Kaspersky product scanned their mail.
PRODUCT_NAME = "kav4mailservers"
PRODUCT_VERSION = "5.5"

# Locations of 5.5 on the running OS (format notes "Paths of 5.5"; runtime/layout.py has the
# table per OS family: /etc/kav/5.5 on Linux, /usr/local/etc/kav/5.5 on FreeBSD).
ETC_DIR = HOST.etc
DB_DIR = HOST.db
LOG_DIR = HOST.log
CONFIG_FILE = HOST.conf_file


@dataclass(frozen=True)
class Key:
    name: str
    type: v.ValueType
    default: Any
    guide: str
    doc: str
    note: str = ""  # why this default, where the guide is silent
    aliases: tuple[str, ...] = ()  # accepted spellings, reported with a warning, written canonically

    def default_text(self) -> str:
        return self.type.format(self.default) if self.default is not None else ""


@dataclass(frozen=True)
class Section:
    name: str
    guide: str
    doc: str
    keys: tuple[Key, ...]
    #: a pattern section: ``smtpscan.group:NAME`` or ``smtpscan.notify.ROLE.EVENT``
    pattern: bool = False
    _index: dict[str, Key] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for key in self.keys:
            self._index[key.name.lower()] = key
            for alias in key.aliases:
                self._index[alias.lower()] = key

    def key(self, name: str) -> Key | None:
        """Look a key up case-insensitively, through its aliases."""
        return self._index.get(name.lower())

    def key_names(self) -> list[str]:
        return [k.name for k in self.keys]


K = Key  # brevity in the table below

_PERM = v.Octal()
_BOOL = v.Bool()
_LEVEL = v.Int(minimum=0, maximum=10)


def _report_keys(guide: str, filename: str, perm: int = 0o640) -> tuple[Key, ...]:
    return (
        K(
            "ReportFileName",
            v.Path(optional=True),
            f"{LOG_DIR}/{filename}",
            guide,
            "Event log file (empty: standard error).",
        ),
        K("ReportLevel", _LEVEL, 4, "6.8", "Level of detail 0-10; fatal errors are always written. 4 is optimal."),
        K(
            "ReportFilePermission",
            _PERM,
            perm,
            "5.2.1",
            "Permission of a newly created event log.",
            note="0640: logs hold addresses and virus names; the guide's example uses 0660.",
        ),
        K("Append", _BOOL, True, "5.1.2", "Append to the event log rather than truncate it at start."),
    )


def _group_keys() -> tuple[Key, ...]:
    keys: list[Key] = [
        K("Senders", v.RegexList(), [".*@.*"], "6.1.1", "POSIX regex masks of senders in this group."),
        K("Recipients", v.RegexList(), [".*@.*"], "6.1.1", "POSIX regex masks of recipients in this group."),
        K("Check", _BOOL, True, "6.1.2", "Scan this group's mail; with any Cured* key cure mode is on too."),
        K(
            "AdminAddress",
            v.Address(),
            "postmaster@localhost",
            "4.1",
            "Group administrator who receives admin notices.",
        ),
        K(
            "QuarantinePath",
            v.Path(),
            f"{DB_DIR}/quarantine",
            "5.2.2",
            "Quarantine directory (objects are kept encrypted, 0600).",
            note="Under the product's state tree rather than the guide's example /var/db/Quarantine.",
        ),
        K("AddXHeaders", _BOOL, True, "6.8.4", "Add the X-Anti-Virus: header to scanned messages."),
        K("FilterByName", v.RegexList(), [], "5.2.5", "Attachment names to filter out (status Filtered)."),
        K(
            "Quarantine",
            _BOOL,
            False,
            "6.1.3",
            "Group switch for quarantine; the statuses quarantined are chosen by <Status>Quarantine.",
            note="6.1.3 and 5.2.5 show Quarantine=yes as a switch with per-status keys beside it.",
        ),
        K("AdminNotify", _BOOL, True, "6.1.4", "Notify the group administrator."),
        K("AdminAction", v.GroupAction(), "unchanged", "6.1.3", "Object in the administrator's copy."),
        K(
            "AdminAttachReport",
            _BOOL,
            True,
            "6.1.4",
            "Attach the scan report to the administrator's notice.",
            note="Not printed by the guide; the admin copy always carried the report in 5.x front-ends.",
        ),
        K(
            "SenderNotify",
            _BOOL,
            False,
            "6.1.4",
            "Notify the sender (notifications only, 6.1.3).",
            note="no: senders of virus mail are nearly always forged; notices to them are backscatter.",
        ),
        K("RecipientNotify", _BOOL, True, "6.1.4", "Notify the recipient."),
        K("RecipientAttachReport", _BOOL, True, "5.2.1", "Attach the scan report to the recipient's copy."),
        K(
            "RecipientAction",
            v.RecipientAction(),
            "remove",
            "6.1.3",
            "Object in the recipient's copy.",
            note="discard and reject are our extension beyond the guide (docs/smtpscanner.md, 'Block').",
        ),
        K(
            "DiscardAllowLoss",
            _BOOL,
            False,
            "6.1.3",
            "Allow RecipientAction=discard with neither quarantine nor the admin copy (AdminNotify).",
            note="Our extension: without it config check refuses a discard that would lose the original.",
        ),
    ]
    generic = {k.name: k for k in keys}
    for status in STATUSES:
        for attr in GROUP_ATTRS:
            base = generic[attr]
            if attr == "Quarantine":
                keys.append(
                    K(status + attr, _BOOL, None, "6.1.3", f"Quarantine {status} objects (needs Quarantine=yes).")
                )
            else:
                keys.append(
                    K(status + attr, base.type, None, base.guide, f"{attr} for {status} objects (default: {attr}).")
                )
    return tuple(keys)


GROUP_KEYS = _group_keys()

SECTIONS: tuple[Section, ...] = (
    Section(
        "path",
        "4.1",
        "Where the product keeps its databases, keys, socket and work files.",
        (
            K("BasesPath", v.Path(), f"{DB_DIR}/bases", "4.2",
              "Anti-virus database directory (ClamAV .cvd/.cld containers and plain .hdb/.ndb/.ldb/... files)."),
            K("BasesPublicKey", v.Path(optional=True), "", "4.2",
              "File with the RSA key 'N E' (decimal) that signs .cvd containers; empty: ClamAV's published key."),
            K("LicensePath", v.Path(), f"{DB_DIR}/licenses", "5.4.3", "Directory of product key files."),
            K(
                "LicensePublishersPath",
                v.Path(),
                f"{ETC_DIR}/publishers",
                "5.4",
                "Extra trusted key publishers (*.pub), beside the ones the package ships.",
                note="Not in the guide: keys are ed25519-signed; a site that issues its own keys adds its .pub here.",
            ),
            K(
                "LicenseStatePath",
                v.Path(),
                f"{DB_DIR}/licensing",
                "5.4.1",
                "Licence accounting store (users, traffic, notices); owned by the filter's user.",
                note="Not in the guide: the state directory of the accounting smtpscanner keeps.",
            ),
            K(
                "CachePath",
                v.Path(),
                "/var/cache/kav4mailservers",
                "4.2",
                "aveserver's cache of the compiled database (root-owned; removed on purge).",
                note="Not in the guide: FHS /var/cache, not root's ~/.cache where a purge would leave it.",
            ),
            K("LocalSocketPath", v.Path(), "/var/run/aveserver", "6.4", "aveserver's UNIX socket."),
            K("AVSpidPATH", v.Path(), "/var/run/aveserver.pid", "6.4.2", "aveserver's pid file."),
            K(
                "TempPath",
                v.Path(),
                "/tmp",
                "2.1",
                "Spool directory for messages under scan.",
                note="/tmp as attested; spool files are created 0600 with unguessable names and removed on every path.",
            ),
            K("IcheckerDbFile", v.Path(), "/var/db/kav/5.5/ichecker.db", "6.3.1", "iChecker database of clean files."),
        ),
    ),
    Section(
        "locale",
        "6.7",
        "Date/time formats and the texts used in notifications (%VIRUSNAME%, %ACTION%).",
        (
            K("DateFormat", v.Strftime(), "%d/%m/%y", "6.7", "strftime format of dates."),
            K("TimeFormat", v.Strftime(), "%H:%M:%S", "6.7", "strftime format of times."),
            K("Infected", v.String(), "infected", "6.1.4", "Text of %VIRUSNAME% for Infected objects."),
            K("Suspicious", v.String(), "suspicious", "6.1.4", "Text for Suspicious objects."),
            K("Warning", v.String(), "warning (modified code of a known virus)", "6.1.4", "Text for Warning objects."),
            K("Corrupted", v.String(), "corrupted", "6.1.4", "Text for Corrupted objects."),
            K("Protected", v.String(), "password-protected, not scanned", "6.1.4", "Text for Protected objects."),
            K("Error", v.String(), "could not be scanned", "6.1.4", "Text for Error objects."),
            K("Cured", v.String(), "cured", "6.1.4", "Text for Cured objects."),
            K("CureFailed", v.String(), "infected, disinfection failed", "6.1.4", "Text for CureFailed objects."),
            K("Filtered", v.String(), "filtered by name", "6.1.4", "Text for Filtered objects."),
            K("ActionUnchanged", v.String(), "attachement not modified", "6.1.4", "%ACTION% text (guide's wording)."),
            K("ActionCured", v.String(), "attachement cured", "6.1.4", "%ACTION% text."),
            K("ActionRemoved", v.String(), "attachment removed", "6.1.4", "%ACTION% text."),
            K("ActionCuredRemoved", v.String(), "attachments cured and removed", "6.1.4", "%ACTION% text."),
            K("ActionDiscarded", v.String(), "message not delivered (kept by the administrator)", "6.1.4",
              "%ACTION% text for RecipientAction=discard (our extension)."),
            K("ActionRejected", v.String(), "message refused", "6.1.4",
              "%ACTION% text for RecipientAction=reject (our extension)."),
        ),
    ),
    Section(
        "aveserver.options",
        "6.4",
        "The scanning daemon.",
        (
            K("DetachFromTerminal", _BOOL, True, "6.4", "Go to the background after start (no under a supervisor)."),
            K(
                "StartupMode",
                v.Choice(choices=("fast", "normal")),
                "normal",
                "6.4",
                "fast: detach after reading the config; normal: after loading databases and keys.",
                note="normal: a start that cannot load its databases fails visibly instead of silently.",
            ),
            K(
                "LocalSocketPermission",
                _PERM,
                0o660,
                "6.4",
                "Permission of the UNIX socket; owner User, group User's group (filter).",
                note="The guide printed 0666: any local user could then SCAN, RELOAD and SHUTDOWN. 0660 lets "
                "only aveserver's account and its group (smtpscanner's) connect.",
            ),
            K(
                "User",
                v.String(),
                "kluser",
                "6.4",
                "Account the workers serve as after root bound the socket ('root' keeps root: not recommended).",
                note="Not in the guide (it ran aveserver as root); like clamd's User clamav.",
            ),
            K(
                "Workers",
                v.Int(minimum=0, maximum=256),
                0,
                "6.4",
                "Scanning worker processes; 0 means one per CPU core.",
                note="Not in the guide; scanning is CPU bound, so every core is used by default.",
            ),
            K(
                "ClamdTcpPort",
                v.Int(minimum=0, maximum=65535),
                0,
                "6.4",
                "Also speak the clamd protocol on 127.0.0.1:PORT; 0 = off.",
                note="off: the UNIX socket is the least-privilege default.",
            ),
            K("ClamdTcpAddress", v.String(), "127.0.0.1", "6.4", "Address for ClamdTcpPort."),
            K("StreamMaxLength", v.Int(minimum=1), 104857600, "6.4", "Largest INSTREAM object in bytes."),
        ),
    ),
    Section(
        "aveserver.limits",
        "6.4",
        "Bounds that stop archive bombs and endless scans (reported as the object's status).",
        (
            K("MaxDepth", v.Int(minimum=1, maximum=64), 16, "6.4", "Deepest container nesting unpacked."),
            K("MaxFiles", v.Int(minimum=1), 10000, "6.4", "Most members unpacked from one object."),
            K("MaxUnpackedSize", v.Int(minimum=1), 268435456, "6.4", "Most bytes unpacked from one object."),
            K("MaxRatio", v.Int(minimum=1), 200, "6.4", "Largest compression ratio accepted for a member."),
            K("MaxScanTime", v.Int(minimum=1), 60, "6.4", "Seconds one object may take."),
        ),
    ),
    Section("aveserver.report", "6.8", "aveserver's event log.", _report_keys("6.8", "aveserver.log")),
    Section(
        "smtpscan.general",
        "4.4.5",
        "smtpscanner: protocol in and out.",
        (
            K(
                "Protocol",
                v.Choice(choices=("lmtp", "smtp")),
                "lmtp",
                "6.6.4",
                "Protocol smtpscanner speaks to the MTA.",
            ),
            K(
                "ListenAddress",
                v.Listen(),
                "inet:127.0.0.1:10025",
                "4.4.3",
                "Where a standing smtpscanner listens (stdio when spawned by the MTA).",
            ),
            K(
                "PidFile",
                v.Path(optional=True),
                "/var/run/kav4mailservers/smtpscanner.pid",
                "6.4.1",
                "The standing smtpscanner's pid file; its reload state (.state) beside it.",
                note="Not in the guide: kavconsole finds the daemon here to ask for a SIGHUP reload. Empty: none.",
            ),
            K("ForwardMailer", v.Mailer(), "smtp:127.0.0.1:10026", "4.4.5", "Where scanned mail goes back to the MTA."),
            K("NotifyFromAddress", v.Address(), "MAILER-DAEMON@localhost", "4.1", "Sender of all notifications."),
            K(
                "EHLOsupport8BITMIME",
                _BOOL,
                False,
                "6.6.2",
                "Advertise and pass on 8BITMIME.",
                aliases=("EHL0support8BITMIME",),
                note="Off until the admin confirms the next hop supports it (6.6.2).",
            ),
            K(
                "EHLOsupportDSN",
                _BOOL,
                False,
                "6.6.1",
                "Advertise and pass on DSN (NOTIFY/ORCPT/RET/ENVID unchanged).",
                aliases=("EHL0supportDSN",),
                note="The guide says to check the routing MTA supports DSN first.",
            ),
            K(
                "EHLOsupportXFORWARD",
                _BOOL,
                False,
                "6.6.3",
                "Advertise and pass on XFORWARD (Postfix, SMTP protocol).",
                aliases=("EHL0supportXFORWARD",),
            ),
            K(
                "EHLOattrsXFORWARD",
                v.XforwardAttrs(),
                ["NAME", "ADDR", "PROTO", "HELO"],
                "6.6.3",
                "XFORWARD attributes passed on.",
                aliases=("EHL0attrsXFORWARD",),
            ),
            K(
                "EHLOsupportSMTPUTF8",
                _BOOL,
                False,
                "6.6",
                "Advertise and pass on SMTPUTF8.",
                aliases=("EHL0supportSMTPUTF8",),
            ),
            K("User", v.String(), "kluser", "4.4.3", "Account smtpscanner runs as (least privilege)."),
            K(
                "BeforeQueue",
                _BOOL,
                False,
                "4.4.5",
                "The MTA hands mail over before it queues it (Postfix smtpd_proxy_filter), so a 5xx "
                "reaches the sending client: needed by RecipientAction=reject.",
                note="Our extension; the filter cannot tell from the session, so the admin says so.",
            ),
        ),
    ),
    Section(
        "smtpscan.license",
        "5.4.1",
        "Licensing: the protected mail domains.",
        (
            K(
                "LicenseDomains",
                v.RegexList(),
                [".*"],
                "5.4.1",
                "POSIX regex masks of protected domains, comma separated.",
                aliases=("LicenseDomain",),
                note="'.*' until the installer writes the site's domains: no mail is refused for licensing.",
            ),
        ),
    ),
    Section(
        "smtpscan.limits",
        "4.4.5",
        "Bounds on the mail filter; past them the MTA is told to retry (4xx), no mail is lost.",
        (
            K("MaxCheckTime", v.Int(minimum=1), 60, "4.4.5", "Seconds a message may take to scan."),
            K(
                "MaxMessageSize",
                v.Int(minimum=0),
                52428800,
                "4.4.5",
                "Largest message accepted in bytes; 0 = no limit.",
                note="50 MiB, above every common MTA's own message_size_limit.",
            ),
            K("MaxScanners", v.Int(minimum=1, maximum=1024), 16, "1.1", "Messages scanned at the same time."),
        ),
    ),
    Section(
        "smtpscan.notify",
        "6.1.4",
        "Notifications to senders, recipients and administrators.",
        (
            K(
                "Template",
                v.Path(optional=True),
                "",
                "6.1.4",
                "Notification template (empty: the built-in general text, template_notify_main).",
            ),
            K("Subject", v.String(), "Anti-virus notification: %VIRUSNAME%", "6.1.4", "Subject; macros allowed."),
            K("MimeType", v.String(), "text/plain", "6.1.4", "MIME type of the notice body."),
            K("Charset", v.String(), "utf-8", "6.1.4", "Codepage of the notice body."),
        ),
    ),
    Section(
        "smtpscan.notify.ROLE.EVENT",
        "6.1.4",
        "Per role (admin, sender, recipient) and event template and subject.",
        (
            K("Template", v.Path(optional=True), "", "6.1.4", "Template for this role and event."),
            K("Subject", v.String(), "", "6.1.4", "Subject for this role and event (empty: [smtpscan.notify])."),
        ),
        pattern=True,
    ),
    Section(
        "smtpscan.report",
        "6.8",
        "smtpscanner's event log and statistics.",
        (
            *_report_keys("6.8", "smtpscanner.log"),
            K("ShowOk", _BOOL, False, "5.2.1", "Also log clean messages."),
            K("AVStatistics", v.Path(optional=True), "", "6.8.3", "Virus statistics file (empty: off)."),
        ),
    ),
    Section(
        "smtpscan.group:NAME", "6.1", "A group of senders and recipients with its rules.", GROUP_KEYS, pattern=True
    ),
    Section(
        "updater.path",
        "5.1",
        "keepup2date's directories.",
        (
            K("BackUpPath", v.Path(), f"{DB_DIR}/bases.backup", "5.1", "Copy of the previous databases."),
            K("UploadPatchPath", v.Path(optional=True), "", "5.1", "Where downloaded module patches go."),
            K(
                "ServerListFile",
                v.Path(optional=True),
                "",
                "5.1",
                "Another list of update servers than the shipped one (updcfg.xml's role).",
                note="Empty: the list shipped in runtime/updater/mirrors.list, which the admin does not edit.",
            ),
        ),
    ),
    Section(
        "updater.options",
        "5.1",
        "keepup2date.",
        (
            K("KeepSilent", _BOOL, False, "5.1.2", "No console output."),
            K("UseUpdateServerUrl", _BOOL, False, "5.1.1", "Use UpdateServerUrl."),
            K("UpdateServerUrl", v.String(), "", "5.1.1", "Own update source (URL or directory)."),
            K("UseUpdateServerUrlOnly", _BOOL, False, "5.1.1", "Do not fall back to the server list."),
            K(
                "RequireKey",
                _BOOL,
                False,
                "5.4",
                "The update source requires a valid product key: refuse to update without one.",
                note="Off: the project's sources are open; a site whose service is an entitlement sets it.",
            ),
            K("RegionSettings", v.String(), "", "5.1", "Region hint for server choice."),
            K(
                "PostUpdateCmd",
                v.String(),
                "systemctl reload kav4mailservers-aveserver.service",
                "5.1",
                "Run after a successful update.",
                note="The guide's /etc/init.d/aveserver reload in the packaged unit's form; aveserver keeps "
                "answering while it reloads (6.4.1).",
            ),
            K("ConnectTimeout", v.Int(minimum=1), 30, "5.1", "Seconds to wait for an update server."),
            K(
                "ReceiveTimeout",
                v.Int(minimum=1),
                60,
                "5.1",
                "Seconds to wait for more data from an update server before giving up (a hanging mirror).",
                note="Not in the guide: without it a mirror that stops sending holds cron's run forever.",
            ),
            K(
                "DnsServer",
                v.String(),
                "",
                "5.1",
                "DNS server (HOST or HOST:PORT) for the version TXT record of the official source.",
                note="Empty: the first nameserver of /etc/resolv.conf.",
            ),
            K("UseProxy", _BOOL, False, "5.1.5", "Go through ProxyAddress or $http_proxy."),
            K("ProxyAddress", v.String(), "", "5.1.5", "http://user:password@ip:port"),
            K("PassiveFtp", _BOOL, True, "5.1", "Passive FTP (works through NAT)."),
        ),
    ),
    Section("updater.report", "5.1", "keepup2date's event log.", _report_keys("5.1.2", "keepup2date.log")),
    Section(
        "scanner.options",
        "6.2",
        "kavscanner: what to scan and how.",
        (
            K("Cure", _BOOL, False, "6.2.2", "Disinfect infected files."),
            K("Recursion", _BOOL, True, "6.2.1", "Descend into directories."),
            K("ExcludeMask", v.StrList(), [], "6.2.1", "Shell masks of files not scanned."),
            K("ExcludeDirs", v.StrList(), [], "6.2.1", "Directories not scanned."),
            K("MaxLoadAvg", v.Float(minimum=0), 0.0, "6.3.2", "Pause while the load average exceeds this; 0 = off."),
            K("UseIChecker", _BOOL, True, "6.3.1", "Skip files unchanged since found clean."),
            K(
                "IcheckerKeepVerdicts",
                _BOOL,
                False,
                "6.3.1",
                "Also remember non-clean verdicts of unchanged files: reported and acted upon again, not rescanned.",
                note="Not in the guide (its iChecker stores clean files only, hence off by default); a cure run "
                "(Cure=yes, -i1..-i3) still rescans them: it needs the engine's disinfected bytes.",
            ),
            K("Packed", _BOOL, True, "6.2.1", "Scan packed executables."),
            K("Archives", _BOOL, True, "6.2.1", "Scan inside archives."),
            K("SelfExtArchives", _BOOL, True, "6.2.1", "Scan self-extracting archives."),
            K("MailBases", _BOOL, True, "6.2.1", "Scan mailbox files."),
            K("MailPlain", _BOOL, True, "6.2.1", "Scan plain mail messages."),
            K("CrossFs", _BOOL, False, "6.2.1", "Cross file-system boundaries."),
            K("FollowSymlinks", _BOOL, False, "6.2.1", "Follow symbolic links found inside the scanning area."),
            K(
                "Workers",
                v.Int(minimum=0),
                0,
                "6.3",
                "Files scanned in parallel; 0 = one per core.",
                note="In-process: forked workers; with UseAveserver: 2 x this many connections to aveserver.",
            ),
            K(
                "UseAveserver",
                _BOOL,
                True,
                "6.3",
                "Scan through the running aveserver ([path] LocalSocketPath) with AVE/1 SCANFD.",
                note="Not in the guide. In-process when none answers; default yes: measured faster (bench/README.md).",
            ),
        ),
    ),
    *(
        Section(
            name,
            "6.2.3",
            f"kavscanner actions on {what}.",
            (
                K("OnInfected", v.ScanAction(), [], "6.2.3", "Action on infected objects."),
                K("OnSuspicion", v.ScanAction(), [], "6.2.3", "Action on suspicious objects."),
                K("OnWarning", v.ScanAction(), [], "6.2.3", "Action on warning objects."),
                K("OnCorrupted", v.ScanAction(), [], "6.2.3", "Action on corrupted objects."),
                K("OnProtected", v.ScanAction(), [], "6.2.3", "Action on password-protected objects."),
                K("OnError", v.ScanAction(), [], "6.2.3", "Action on objects that could not be scanned."),
            ),
        )
        for name, what in (("scanner.object", "simple objects"), ("scanner.container", "containers"))
    ),
    Section(
        "scanner.path",
        "5.3.5",
        "kavscanner's directories.",
        (K("BackupPath", v.Path(optional=True), "", "5.3.5", "Backup copies before cure/removal (empty: off)."),),
    ),
    Section(
        "scanner.report",
        "6.8",
        "kavscanner's event log.",
        (
            *_report_keys("6.8", "kavscanner.log"),
            K("ShowObjectResultOnly", _BOOL, False, "6.8.1", "Short format for simple objects."),
            K("ShowContainerResultOnly", _BOOL, False, "6.8.1", "Short format for containers."),
        ),
    ),
    Section(
        "console",
        "4.3",
        "kavconsole: the web console for remote administration and /metrics (guide 4.3, 1.1, 6.8.3).",
        (
            K(
                "Listen",
                v.String(),
                "127.0.0.1:10180",
                "4.3",
                "ADDRESS:PORT of the web console and /metrics.",
                note="Loopback: an administration console is reached through a tunnel or a proxy unless opened.",
            ),
            K(
                "TLSCertificate",
                v.Path(optional=True),
                "",
                "4.3",
                "PEM certificate (chain); with TLSKey the console speaks only HTTPS.",
                note="Empty: plain HTTP, acceptable only on loopback where the default binds.",
            ),
            K("TLSKey", v.Path(optional=True), "", "4.3", "PEM private key of TLSCertificate."),
            K(
                "PasswordFile",
                v.Path(),
                f"{ETC_DIR}/console.passwd",
                "4.3",
                "Console accounts (user:role:scrypt hash), written by `kavconsole passwd`.",
                note="Next to the configuration it administers; the file is created 0600.",
            ),
            K(
                "AuditLog",
                v.Path(),
                f"{LOG_DIR}/console-audit.log",
                "4.3",
                "Every console action, allowed or refused, one JSON line each.",
                note="Beside the other event logs, so log rotation already covers it.",
            ),
            K(
                "User",
                v.String(),
                "kluser",
                "4.3",
                "Account the console runs as when started by root (it never serves as root).",
                note="The account smtpscanner runs as (the packages' units): it owns the quarantine and statistics.",
            ),
            K(
                "PAMService",
                v.String(),
                "",
                "4.3",
                "PAM service (a file in /etc/pam.d) for logging in with a system account; empty: PasswordFile only.",
                note="Off by default; the console is unprivileged, so the service needs a module that works "
                "without root (docs/console.md).",
            ),
            K(
                "PAMAdminGroup",
                v.String(),
                "",
                "4.3",
                "System group whose members may log in through PAMService as administrators.",
                note="Empty: no system account is an administrator of the console.",
            ),
            K(
                "PAMReadOnlyGroup",
                v.String(),
                "",
                "4.3",
                "System group whose members may log in through PAMService read-only.",
                note="Accounts in neither group are refused before PAM is asked: the quarantine holds others' mail.",
            ),
            K(
                "SessionTimeout",
                v.Int(minimum=1, maximum=86400),
                900,
                "4.3",
                "Seconds of inactivity after which a login session expires.",
                note="15 minutes, the usual idle limit of administration consoles.",
            ),
            K(
                "LoginAttempts",
                v.Int(minimum=1, maximum=1000),
                5,
                "4.3",
                "Failed logins from one address (or for one user) before logins are refused for LoginLockout.",
                note="5: enough for typing errors, too few for guessing.",
            ),
            K(
                "LoginLockout",
                v.Int(minimum=1, maximum=86400),
                300,
                "4.3",
                "Seconds logins stay refused after LoginAttempts failures.",
                note="5 minutes slows guessing to about one try a minute.",
            ),
            K(
                "MetricsAllow",
                v.StrList(),
                [],
                "1.1",
                "Addresses besides loopback that may read /metrics without a login (the Prometheus server).",
                note="Empty: only loopback; metrics name viruses and volumes, not for everyone.",
            ),
            K(
                "StatisticsStore",
                v.Path(optional=True),
                "",
                "6.8.3",
                "SQLite store smtpscanner writes each message's result to, for the console's plots and /metrics.",
                note="Off until set: one small write per message, and the directory must suit the filter's user.",
            ),
            K(
                "StatisticsKeepDays",
                v.Int(minimum=1, maximum=3650),
                400,
                "6.8.3",
                "Days of per-message statistics kept (the /metrics totals are kept for ever).",
                note="Over a year, so a period can be compared with the same one last year.",
            ),
        ),
    ),
    Section(
        "display",
        "6.8.2",
        "kavscanner's console output.",
        (
            K("ShowContainerResultOnly", _BOOL, False, "6.8.2", "Only the container's result."),
            K("ShowOK", _BOOL, False, "6.8.2", "Show clean files.", aliases=()),
            K("ShowProgress", _BOOL, False, "6.8.2", "Show progress."),
        ),
    ),
)

SECTION_INDEX: dict[str, Section] = {s.name: s for s in SECTIONS}

#: Misspelt section prefixes the guide itself prints (5.2.1 ``[smtpscanner.group:default]``, 5.2).
SECTION_ALIASES: dict[str, str] = {"smtpscanner.": "smtpscan."}


def canonical_section(name: str) -> tuple[str, bool]:
    """Canonical section name and whether an alias was used."""
    lower = name.strip()
    for alias, canon in SECTION_ALIASES.items():
        if lower.lower().startswith(alias):
            return canon + lower[len(alias) :], True
    return lower, False


def section_schema(name: str) -> Section | None:
    """The schema of a concrete section name (``smtpscan.group:users`` -> the group pattern)."""
    if name in SECTION_INDEX:
        return SECTION_INDEX[name]
    if name.startswith("smtpscan.group:") and len(name) > len("smtpscan.group:"):
        return SECTION_INDEX["smtpscan.group:NAME"]
    parts = name.split(".")
    if len(parts) == 4 and parts[:2] == ["smtpscan", "notify"] and parts[2] in ROLES and parts[3] in EVENTS:
        return SECTION_INDEX["smtpscan.notify.ROLE.EVENT"]
    return None
