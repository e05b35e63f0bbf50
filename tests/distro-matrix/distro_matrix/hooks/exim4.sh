#!/bin/sh
# Debian builds exim4's real configuration from update-exim4.conf.conf (debconf's answers).
set -eu
update-exim4.conf
