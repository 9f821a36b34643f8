#!/usr/bin/env bash
# Installs the Debian packages moondust needs, only those that are missing.
# Fast when everything is present, so `make test` and `make main` call it.
set -eu
pkgs=(build-essential pkg-config lua5.4 liblua5.4-dev luarocks libopenblas-dev libpng-dev
      zlib1g-dev libturbojpeg0-dev check libdnnl-dev libreadline-dev dataset-fashion-mnist libopenmpi-dev openmpi-bin gnuplot-nox)
[ -n "${MOONDUST_BENCH:-}" ] && pkgs+=(python3-torch libtcmalloc-minimal4)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
