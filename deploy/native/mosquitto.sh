#!/usr/bin/env bash
# Install Mosquitto from Debian packages and run it on loopback with passwords, an ACL and a TLS
# listener. Idempotent: reuses the package, the generated passwords and certificates.
#   deploy/native/mosquitto.sh {start|stop|install}
SERVICE=mosquitto
source "$(dirname "$0")/lib.sh"

DIR="$STACK_DIR/mosquitto"
PIDFILE="$DIR/mosquitto.pid"
LOGFILE="$DIR/mosquitto.log"
# Accounts the ACL knows; device accounts are named after the domains they publish for, one per
# domain plug-in (from the registry, resolved when the passwords are written).
SERVICE_ACCOUNTS="bridge router subscriber field lorawan"

# The version the broker facts in README.md and tests/integration/test_bridge.py were measured on:
# Debian's bookworm-backports package (bookworm itself has 2.0.11, which lacks upstream's 2.0.12 fix
# for lost $share deliveries and 2.0.19's plain/shared unsubscribe security fix).
MOSQUITTO_VERSION="${SMARTCITY_MOSQUITTO_VERSION:-2.0.21}"
BACKPORTS_LIST=/etc/apt/sources.list.d/smartcity-bookworm-backports.list
# After a failed attempt the backports archive is tried again only an hour later (each `make test`
# starts the stack; an unreachable archive must not cost every run its apt timeouts).
BACKPORTS_FAILED="$CACHE_DIR/mosquitto-backports-failed"

# installed_version -> the installed broker's version ("2.0.21"), empty when none is installed
installed_version() { { mosquitto -h 2>/dev/null || true; } | sed -n 's/^mosquitto version \([^ ]*\).*/\1/p' | head -1; }

# debian_mirror -> the Debian archive URL this host's apt sources already use for bookworm
debian_mirror() {
  if [ -n "${SMARTCITY_DEBIAN_MIRROR:-}" ]; then echo "$SMARTCITY_DEBIAN_MIRROR"; return; fi
  { sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security
    sed -n 's/^deb  *\(http[^ ]*\)  *bookworm .*/\1/p' /etc/apt/sources.list 2>/dev/null
    echo http://deb.debian.org/debian; } | head -1
}

# from_backports -> 0 when mosquitto $MOSQUITTO_VERSION is installed from bookworm-backports
from_backports() {
  [ "$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")" = bookworm ] \
    || { log "WARNING: not Debian bookworm; bookworm-backports does not apply"; return 1; }
  if [ -f "$BACKPORTS_FAILED" ] && [ -z "$(find "$BACKPORTS_FAILED" -mmin +60)" ]; then
    log "WARNING: bookworm-backports failed less than an hour ago ($(cat "$BACKPORTS_FAILED")); not retrying yet"
    return 1
  fi
  local mirror list quick
  mirror="$(debian_mirror)"
  list="deb $mirror bookworm-backports main"
  [ "$(cat "$BACKPORTS_LIST" 2>/dev/null)" = "$list" ] || echo "$list" > "$BACKPORTS_LIST"
  # Refresh only the backports list, with short timeouts: the other sources are not ours to wait for.
  quick=(-o Acquire::Retries=0 -o Acquire::http::Timeout=15 -o Dir::Etc::sourcelist="$BACKPORTS_LIST"
         -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0)
  local ver=""
  if apt-get update -qq "${quick[@]}" >/dev/null 2>&1; then
    ver="$(apt-cache madison mosquitto | awk -F'|' '/bookworm-backports/ {gsub(/ /, "", $2); print $2}' | head -1)"
  fi
  if [ -z "$ver" ]; then
    echo "$(date -u +%FT%TZ) apt-get update of $mirror bookworm-backports failed" > "$BACKPORTS_FAILED"
    rm -f "$BACKPORTS_LIST"   # an unreachable source would make every later apt-get update fail
    log "WARNING: $mirror bookworm-backports cannot be reached"
    return 1
  fi
  case "$ver" in "$MOSQUITTO_VERSION"-*) ;; *)
    log "WARNING: bookworm-backports offers mosquitto '$ver', not $MOSQUITTO_VERSION; installing $MOSQUITTO_VERSION only"
    return 1 ;;
  esac
  log "installing mosquitto $ver from bookworm-backports"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports \
    "mosquitto=$ver" "mosquitto-clients=$ver" "libmosquitto1=$ver" >/dev/null \
    || { log "WARNING: apt-get install -t bookworm-backports mosquitto=$ver failed"; return 1; }
  rm -f "$BACKPORTS_FAILED"
}

install() {
  local have; have="$(installed_version)"
  if [ "$have" = "$MOSQUITTO_VERSION" ] && command -v mosquitto_passwd >/dev/null; then return 0; fi
  if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    [ -n "$have" ] && command -v mosquitto_passwd >/dev/null || die "mosquitto is not installed and this user cannot install it: run as root, or install mosquitto $MOSQUITTO_VERSION (Debian: bookworm-backports) and mosquitto-clients yourself"
    log "WARNING: mosquitto $have installed, $MOSQUITTO_VERSION wanted (the broker facts in README.md were measured on it); installing needs root and apt-get: run 'sudo deploy/native/mosquitto.sh install'"
    return 0
  fi
  if ! from_backports; then
    [ -n "$have" ] && command -v mosquitto_passwd >/dev/null && {
      log "WARNING: keeping mosquitto $have; the README's broker facts were measured on $MOSQUITTO_VERSION"; return 0; }
    log "WARNING: falling back to bookworm's mosquitto package (2.0.11 on bookworm): it lacks upstream's fixes of 2.0.12 (lost \$share deliveries on reconnect) and 2.0.19 (plain/shared unsubscribe)"
    apt-get update -qq >/dev/null || log "apt-get update failed; trying the existing package lists"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null \
      || die "apt-get install mosquitto mosquitto-clients failed"
  fi
  # The Debian service would grab port 1883 with anonymous access: this stack runs its own broker.
  if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
    systemctl stop mosquitto; systemctl disable mosquitto 2>/dev/null || true
  fi
  pkill -x -f '/usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf' 2>/dev/null || true
  log "mosquitto $(installed_version) installed; a broker already running keeps its old version until 'deploy/native/mosquitto.sh stop' and 'start'"
}

certs() {
  local c="$DIR/certs"
  [ -s "$c/server.crt" ] && return 0
  log "generating a local CA and a server certificate for localhost / 127.0.0.1"
  mkdir -p "$c"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=smartcity-local-ca" \
    -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$c/server.key" -out "$c/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$c/san.ext"
  openssl x509 -req -in "$c/server.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial \
    -days 3650 -extfile "$c/san.ext" -out "$c/server.crt" 2>/dev/null
}

configure() {
  mkdir -p "$DIR/data"
  certs
  # Passwords: one generated secret per account, kept in .stack/secrets/mqtt-<user>.
  (umask 077; : > "$DIR/passwd.new")   # 2.0.21 warns that a later version will refuse readable ones
  local devices
  devices="$(registry accounts)"
  for u in $SERVICE_ACCOUNTS $devices; do mosquitto_passwd -b "$DIR/passwd.new" "$u" "$(secret "mqtt-$u")"; done
  mv "$DIR/passwd.new" "$DIR/passwd"
  cp "$CONFIG_DIR/mosquitto/acl" "$DIR/acl"
  chmod 600 "$DIR/acl"
  {
    echo "# generated by deploy/native/mosquitto.sh: loopback listeners, then the shared settings"
    echo "per_listener_settings false"
    echo "pid_file $PIDFILE"
    echo "log_dest file $LOGFILE"
    echo "listener $MQTT_PORT 127.0.0.1"
    echo "listener $MQTT_TLS_PORT 127.0.0.1"
    echo "cafile certs/ca.crt"
    echo "certfile certs/server.crt"
    echo "keyfile certs/server.key"
    cat "$CONFIG_DIR/mosquitto/mosquitto.conf"
  } > "$DIR/mosquitto.conf"
  # Started as root, mosquitto 2.0 drops to the mosquitto user before reading its files. Under a
  # folder that user cannot enter (mktemp -d makes mode 700), it stays root instead of failing to start.
  if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    if su -s /bin/sh mosquitto -c "test -x '$DIR'" 2>/dev/null; then
      chown -R mosquitto: "$DIR"; chmod 700 "$DIR"
    else
      echo "user root" >> "$DIR/mosquitto.conf"
    fi
  fi
}

# wait_exit PID -> waits until the broker process has exited: on SIGTERM it first saves its
# database (sessions, queued messages, retained), which takes seconds when sessions hold a backlog.
wait_exit() {
  local pid=$1 secs=${SMARTCITY_MQTT_STOP_TIMEOUT:-600}
  for _ in $(seq 1 $((secs * 5))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  die "mosquitto (pid $pid) still saving its database after ${secs}s; not killing it (that would lose the sessions). Wait, or raise SMARTCITY_MQTT_STOP_TIMEOUT"
}

start() {
  install
  # A broker that is shutting down (stop below records its pid in $DIR/stopping; mosquitto removes
  # its pid file early) is still saving its database: wait for it rather than start a second one.
  if [ -s "$DIR/stopping" ]; then
    log "a broker (pid $(cat "$DIR/stopping")) is shutting down; waiting until it has saved its database and exited"
    wait_exit "$(cat "$DIR/stopping")"
    rm -f "$DIR/stopping"
  fi
  if pid_alive "$PIDFILE" && port_open "$MQTT_PORT"; then
    configure
    kill -HUP "$(cat "$PIDFILE")"   # reload passwords, ACL and the reloadable settings
    log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$MQTT_PORT (tls $MQTT_TLS_PORT); reloaded"
    return 0
  fi
  port_open "$MQTT_PORT" && die "port $MQTT_PORT is taken by another process (a system mosquitto?); stop it or set SMARTCITY_MQTT_PORT"
  configure
  log "starting on 127.0.0.1:$MQTT_PORT (tls $MQTT_TLS_PORT), data in $DIR"
  (cd "$DIR" && mosquitto -d -c "$DIR/mosquitto.conf")
  wait_port "$MQTT_PORT" 20 "$LOGFILE"
  wait_port "$MQTT_TLS_PORT" 10 "$LOGFILE"
  for _ in $(seq 1 25); do [ -s "$PIDFILE" ] && break; sleep 0.2; done
}

# stop -> returns once the broker has exited (its database saved); a start meanwhile waits too.
stop() {
  if pid_alive "$PIDFILE"; then
    local pid; pid="$(cat "$PIDFILE")"
    echo "$pid" > "$DIR/stopping"
    kill "$pid"; log "stopping (pid $pid): saving the database"
    wait_exit "$pid"
    rm -f "$DIR/stopping"
    log "stopped"
  elif [ -s "$DIR/stopping" ]; then
    wait_exit "$(cat "$DIR/stopping")"; rm -f "$DIR/stopping"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  install) install ;;   # only the package (the chaos suite installs before entering its namespace)
  *) die "usage: $0 {start|stop|install}" ;;
esac
