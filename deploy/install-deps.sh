#!/usr/bin/env bash
# Installs the Debian 12 packages twopc needs to build and test, and only
# those that are missing: a second run installs nothing and takes a second.
# Runs as root, or through sudo when not root.
set -euo pipefail

PACKAGES=(
  build-essential cmake make pkg-config
  procps          # pgrep/pkill in the local-cluster test
  iptables        # network cuts in the fault campaign (used as root)
  protobuf-compiler libprotobuf-dev
  protobuf-compiler-grpc libgrpc++-dev
  librocksdb-dev
  libabsl-dev
  libgtest-dev libgmock-dev
  libcli11-dev
  libgoogle-perftools-dev  # tcmalloc for the binaries
)

missing=()
for package in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || {
    echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  }
  SUDO=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
