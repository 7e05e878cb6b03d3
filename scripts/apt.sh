# Sourced by scripts/test.sh and scripts/pg_setup.sh (bash): `apt_install PKG...` installs the
# Debian packages the tests need (as root). Another apt-get holding apt's locks (a second run of
# the suite on the same machine, unattended-upgrades) is waited for, up to 10 minutes, instead of
# failing the run at once with "Could not get lock /var/lib/dpkg/lock-frontend".
apt_install() {
    if command -v flock >/dev/null 2>&1 && [ -w /var/lock ]; then
        # two runs of the suite take turns (apt's own lock timeout does not cover `apt-get update`)
        ( flock -w 600 9 || true; _apt_get_install "$@" ) 9>>/var/lock/achbatch-apt.lock
    else
        _apt_get_install "$@"
    fi
}

_apt_get_install() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}
