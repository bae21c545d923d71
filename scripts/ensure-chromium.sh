#!/usr/bin/env bash
# Debian's chromium for the dashboard's browser tests (Playwright drives it; it never downloads a browser).
# Installs it with apt-get when missing (needs root or sudo).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  echo "chromium not found: installing Debian's chromium with apt-get"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
chromium --version
