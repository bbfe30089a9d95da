# Shared helpers for the native deploy scripts: paths, logging, port waits. Sourced, not run.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONFIG_DIR="$REPO_ROOT/deploy/config"
# Runtime state (data, logs, pid files, generated secrets) lives in the ignored .stack/ folder.
STACK_DIR="${SMARTCITY_STACK_DIR:-$REPO_ROOT/.stack}"
# Built binaries and resolved jars are cached across clones, keyed by version.
CACHE_DIR="${SMARTCITY_CACHE_DIR:-$HOME/.cache/smartcity}"
mkdir -p "$STACK_DIR" "$CACHE_DIR"

MQTT_PORT="${SMARTCITY_MQTT_PORT:-1883}"
MQTT_TLS_PORT="${SMARTCITY_MQTT_TLS_PORT:-8883}"
KAFKA_PORT="${SMARTCITY_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SMARTCITY_KAFKA_CONTROLLER_PORT:-9093}"
INFLUX_PORT="${SMARTCITY_INFLUX_PORT:-8086}"

log()  { printf '[%s] %s: %s\n' "$(date +%H:%M:%S)" "${SERVICE:-deploy}" "$*" >&2; }
die()  { printf '[%s] %s: ERROR: %s\n' "$(date +%H:%M:%S)" "${SERVICE:-deploy}" "$*" >&2; exit 1; }

# port_open PORT -> 0 when something listens on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT SECONDS LOGFILE -> waits for a listener or dies showing the log tail
wait_port() {
  local port=$1 secs=$2 logfile=${3:-}
  for _ in $(seq 1 $((secs * 5))); do
    port_open "$port" && return 0
    sleep 0.2
  done
  [ -n "$logfile" ] && [ -f "$logfile" ] && tail -n 30 "$logfile" >&2
  die "nothing listens on 127.0.0.1:$port after ${secs}s (log: ${logfile:-none})"
}

# pid_alive PIDFILE -> 0 when the process recorded there still runs
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# secret NAME -> a random secret generated once per stack and kept in .stack/secrets/NAME (mode 600)
secret() {
  local f="$STACK_DIR/secrets/$1"
  mkdir -p "$STACK_DIR/secrets"; chmod 700 "$STACK_DIR/secrets"
  if [ ! -s "$f" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$f")
  fi
  cat "$f"
}

# registry WHAT [ARG] -> what the domain registry says the stack needs (`topics FILE` or `accounts`), through the
# project's virtualenv: topics and device accounts follow the domain plug-ins, never a hand-kept list.
registry() {
  local py="$REPO_ROOT/.venv/bin/python"
  [ -x "$py" ] || die "$py not found: run 'make venv' first (the stack's topics and accounts come from the domain registry)"
  (cd "$REPO_ROOT" && "$py" -m infra.stack "$@") || die "python -m infra.stack $* failed"
}
