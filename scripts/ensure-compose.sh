#!/usr/bin/env bash
# Debian's docker-compose for the deploy tests: `docker-compose config` resolves and validates docker-compose.yml
# without a Docker daemon. Installs it with apt-get when missing (needs root or sudo).
set -euo pipefail
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "docker-compose not found: installing Debian's docker-compose with apt-get"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-compose >/dev/null; }; then
    echo "could not install docker-compose (apt-get needs root or sudo): install Debian's docker-compose package," \
      "then run make test again" >&2
    exit 1
  fi
fi
docker-compose version --short
