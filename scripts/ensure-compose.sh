#!/usr/bin/env bash
# Debian's docker-compose for the deploy tests (`docker-compose config` renders and validates docker-compose.yml;
# it needs no Docker daemon). Installs it with apt-get when missing (needs root or sudo).
set -euo pipefail
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "docker-compose not found: installing Debian's docker-compose with apt-get"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-compose >/dev/null
fi
docker-compose version --short
