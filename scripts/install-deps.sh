#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing Switchyard need, only those missing.
# Usage: scripts/install-deps.sh [--with-node]   (run as root, or with sudo available)
set -euo pipefail

PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libjansson-dev libzmq3-dev libmsgpack-dev libssl-dev libxxhash-dev libyaml-dev libpcre2-dev libcmocka-dev
      curl python3-zmq python3-msgpack python3-prometheus-client nodejs npm unicode-data)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        # a command of the same name already on PATH (for example node from elsewhere) is enough
        case "$p" in
            nodejs) command -v node >/dev/null 2>&1 && continue ;;
            npm) command -v npm >/dev/null 2>&1 && continue ;;
        esac
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all packages present"
    exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
