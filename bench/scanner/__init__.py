"""kavscanner against clamscan -r and clamdscan --multiscan --fdpass (``python -m bench.scanner``)."""
