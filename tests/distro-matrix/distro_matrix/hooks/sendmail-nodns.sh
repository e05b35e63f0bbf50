#!/bin/sh
# Sendmail in a private network namespace has no DNS (testing.md): without these it answers
# "451 4.1.8 Domain of sender address ... does not resolve". The changes are made the way an
# administrator would make them (sendmail.mc + Debian's Makefile), before the snapshot, so they are
# part of the configuration our uninstall must give back byte for byte.
set -eu
cd /etc/mail
cp service.switch-nodns service.switch
for feature in accept_unresolvable_domains accept_unqualified_senders; do
    grep -q "FEATURE(\`$feature')" sendmail.mc ||
        sed -i "/^MAILER_DEFINITIONS/i FEATURE(\`$feature')dnl" sendmail.mc
done
# The 1 s greeting pause only slows the tests; access already exempts 127/8, drop it for all.
sed -i '/^FEATURE(`greet_pause'"'"'/d' sendmail.mc
make -s -C /etc/mail all >/dev/null
newaliases
