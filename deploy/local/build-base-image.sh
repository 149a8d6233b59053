#!/bin/sh
# The base image for every local image when no registry can be reached: Debian bookworm
# (debootstrap minbase) with Debian's Python 3.11, imported as localhost/debian-python:3.11.
# It stands in for python:3.11-slim-bookworm (the Dockerfile's PYTHON_IMAGE default): the same
# Debian release and Python minor version, `python` and `python -m venv` work, apt works.
#
#   deploy/local/build-base-image.sh            # builds it unless it exists (about 50 s)
#   REBUILD=1 deploy/local/build-base-image.sh  # builds it again
#
# Needs root, podman and debootstrap. The Debian mirror is the one apt uses on this machine
# (DEBIAN_MIRROR overrides it); the image gets the host's Debian sources so that apt inside
# image builds sees the same suites (updates, security).
set -eu

image=${BASE_IMAGE:-localhost/debian-python:3.11}
suite=bookworm

if [ "${REBUILD:-0}" != 1 ] && podman image exists "$image"; then
    echo "base image $image exists (REBUILD=1 builds it again)"
    exit 0
fi

host_mirror() {
    # The first Debian archive apt is configured with: deb822 `URIs:` or one-line `deb URI`.
    for file in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        awk -v suite="$suite" '
            /^URIs:/ { uri = $2 }
            /^Suites:/ && uri != "" { for (i = 2; i <= NF; i++) if ($i == suite) { print uri; exit } }
            $1 == "deb" && $3 == suite { print $2; exit }
        ' "$file"
    done | head -n 1
}

mirror=${DEBIAN_MIRROR:-$(host_mirror)}
if [ -z "$mirror" ]; then
    echo "no Debian $suite mirror in /etc/apt/sources*: set DEBIAN_MIRROR" >&2
    exit 1
fi

started=$(date +%s)
rootfs=$(mktemp -d /var/tmp/debian-python-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT INT TERM

debootstrap --variant=minbase "$suite" "$rootfs" "$mirror"

if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
    : > "$rootfs/etc/apt/sources.list"
fi
# As Debian's own container images do: dpkg leaves documentation, manual pages and message
# translations out, and apt removes its downloaded packages and caches after each run
# (`apt-get update` brings the lists back); this holds for every image built on this one.
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/excludes" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
CONF
cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
# python3.11-venv brings ensurepip's wheels, so `python -m venv` gives a venv with pip; no
# python3-pip in the base (nothing at run time needs a system pip).
chroot "$rootfs" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends \
        python3.11 python3.11-venv python-is-python3 ca-certificates >/dev/null'
: > "$rootfs/etc/resolv.conf"

rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true

tar -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$image"
echo "built $image in $(($(date +%s) - started)) s"
