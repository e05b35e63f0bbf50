#!/bin/sh
# Inside a debian/ubuntu container: install Postfix and our package's Depends from the
# distribution, then the same checks as the chroot backend's baseline+install+remove+purge.
set -eu
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections 2>/dev/null || true
apt-get update -q
apt-get install -y -q --no-install-recommends postfix swaks procps python3 python3-aiosmtpd \
    python3-ahocorasick python3-cryptography python3-distro python3-jinja2 python3-prometheus-client python3-ruamel.yaml adduser
id alice >/dev/null 2>&1 || useradd -m alice
snap() { find /etc/postfix -exec stat -c '%n %a %u %g %s' {} + | sort; find /etc/postfix -type f -exec sha256sum {} + | sort; }
snap > /tmp/before
dpkg -i /dist/kav4mailservers_*_all.deb
dpkg -r kav4mailservers
snap > /tmp/after
diff -u /tmp/before /tmp/after
postfix start
swaks --server 127.0.0.1:25 --to alice@localhost --header "Subject: docker-matrix" >/dev/null
for _ in $(seq 1 40); do grep -q docker-matrix /var/mail/alice 2>/dev/null && break; sleep 0.25; done
grep -q docker-matrix /var/mail/alice
postfix stop
dpkg --purge kav4mailservers
test ! -e /etc/kav/5.5/kav4mailservers && ! getent passwd kluser
echo "docker scenario: pass"
