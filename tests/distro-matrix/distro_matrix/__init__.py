"""The distro matrix: Debian roots x real MTAs x our .deb, driven from pytest or run.py (issue 7)."""
