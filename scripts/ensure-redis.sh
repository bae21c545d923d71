#!/usr/bin/env bash
# Make sure a redis-server binary exists (tests start their own on free ports) and one serves the default port
# for `make run`. Installs Debian's redis-server when missing (needs root or sudo).
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found: installing it with apt-get"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
PORT="${BRIDGEX_REDIS_PORT:-6379}"
if ! redis-cli -p "$PORT" ping >/dev/null 2>&1; then
  echo "starting redis-server on 127.0.0.1:$PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
    --dir /tmp --logfile /tmp/bridgex-redis.log
  for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
redis-cli -p "$PORT" ping >/dev/null
