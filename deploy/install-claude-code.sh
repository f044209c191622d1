#!/bin/sh
# Install the pinned Claude Code CLI into PREFIX (default /opt/driftwatch/claude-code)
# and print the path of its binary. Running it again with the pin already
# installed changes nothing.
#
# Usage: deploy/install-claude-code.sh [PREFIX]
#
# npm 11 skips the package's postinstall script; the CLI still runs because
# node_modules/.bin/claude points at the bundled binary. Node 20 prints an
# EBADENGINE warning for this version, which is harmless here.
set -eu

CLAUDE_CODE_VERSION=2.1.332
PREFIX=${1:-/opt/driftwatch/claude-code}
BIN="$PREFIX/node_modules/.bin/claude"

installed_version () {
    # "2.1.332 (Claude Code)" -> "2.1.332"
    "$BIN" --version 2>/dev/null | awk 'NR == 1 { print $1 }'
}

if [ -x "$BIN" ] && [ "$(installed_version)" = "$CLAUDE_CODE_VERSION" ]; then
    echo "$BIN"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "install-claude-code: npm not found; install nodejs and npm first" >&2
    exit 1
fi

mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >&2

if [ ! -x "$BIN" ]; then
    echo "install-claude-code: $BIN missing after npm install" >&2
    exit 1
fi
got=$(installed_version)
if [ "$got" != "$CLAUDE_CODE_VERSION" ]; then
    echo "install-claude-code: $BIN reports version '$got', expected $CLAUDE_CODE_VERSION" >&2
    exit 1
fi
echo "$BIN"
