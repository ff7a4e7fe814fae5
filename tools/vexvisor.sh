#!/usr/bin/env bash
# Thin wrapper: runs `vexvisor` with the given arguments. It uses $VEXVISOR_BIN if set, else a
# `vexvisor` on PATH, else the one built in this checkout (release first, then debug).
#
#   tools/vexvisor.sh run --home /var/lib/vexidus -- --validator-key /etc/vexidus/key
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
for candidate in "${VEXVISOR_BIN:-}" "$(command -v vexvisor || true)" \
    "$target/release/vexvisor" "$target/debug/vexvisor"; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then
        exec "$candidate" "$@"
    fi
done
echo "vexvisor.sh: no vexvisor binary found; build it with \`cargo build --release -p vexvisor\` or set VEXVISOR_BIN" >&2
exit 127
