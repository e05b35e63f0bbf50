"""Product keys and licence accounting (guide 5.4).

In this open project a key is an *entitlement*, not a lock: it tells an admin which update
service and support a host is entitled to and how much mail (users or traffic) the filter protects.
Scanning and mail flow never depend on it (5.4: "will continue scanning ... mail traffic").

Modules, one job each: ``keyfile`` (the signed file format), ``publishers`` (trusted public keys),
``keystore`` (the keys installed in ``[path] LicensePath``), ``accounting`` (the sqlite store the
filter counts into), ``policy`` (which notices are due), ``cli`` (``licensemanager``).
"""
