#!/usr/bin/env bash
# Installs the Debian 12 packages meshpilot needs to build and test, if any are missing.
# Run as root (or with sudo available). Safe to run again: it installs only what is absent.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git curl ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev nlohmann-json3-dev libcpp-httplib-dev catch2 libyaml-cpp-dev
  libre2-dev libssl-dev libboost-dev zlib1g-dev
  redis-server mariadb-server mariadb-client libhiredis-dev libmariadb-dev
  etcd-server etcd-client
  clang libclang-rt-14-dev
  libnghttp2-dev nghttp2-client
  prometheus
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: missing packages (${missing[*]}) and not root; run as root" >&2
    exit 1
  fi
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
