#!/usr/bin/env bash
# Install everything driftwatch needs to build, test and run on Debian 12:
# compilers, the libraries it links, PostgreSQL, git, bubblewrap, podman,
# the demo suite's toolchains (C, Python, Node.js) and the pinned Claude Code
# CLI. Safe to run again. Needs root (or sudo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" != 0 ]; then
    exec sudo "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive

packages=(
    build-essential cmake pkg-config git ca-certificates
    libzmq3-dev libczmq-dev libprotobuf-c-dev protobuf-c-compiler
    libpq-dev libcurl4-openssl-dev libjansson-dev libmicrohttpd-dev
    postgresql postgresql-contrib
    bubblewrap podman runc uidmap iproute2 util-linux procps
    python3 clang valgrind busybox-static
)
# Node.js and npm: keep an existing installation (it may come from another
# source whose nodejs package conflicts with Debian's npm).
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Claude Code CLI at the pinned version, in a prefix driftwatch owns.
if [ -x "$here/install-claude-code.sh" ]; then
    "$here/install-claude-code.sh" >/dev/null
fi
echo "dependencies installed"
