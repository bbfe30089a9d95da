#!/usr/bin/env bash
# Build (once, cached by version) and start InfluxDB 2.7 OSS from the Go module proxy and crates.io,
# then run the one-time setup (org, buckets, operator token). Idempotent.
#   deploy/native/influxdb.sh build   # only build/cache the binary
#   deploy/native/influxdb.sh start   # build if needed, start, set up
#   deploy/native/influxdb.sh stop
SERVICE=influxdb
source "$(dirname "$0")/lib.sh"

INFLUX_VERSION="${SMARTCITY_INFLUX_VERSION:-v2.7.12}"
PKGCONFIG_VERSION=v0.2.14  # the version influxdb v2.7.12 requires
BUILD_DIR="$CACHE_DIR/influxdb-$INFLUX_VERSION"
BIN="$BUILD_DIR/bin/influxd"
DATA="$STACK_DIR/influxdb"
PIDFILE="$STACK_DIR/influxdb.pid"
LOGFILE="$STACK_DIR/influxdb.log"
ORG="${SMARTCITY_INFLUX_ORG:-laoshan}"

build() {
  if [ -x "$BIN" ]; then log "cached binary $BIN ($INFLUX_VERSION)"; return 0; fi
  command -v go >/dev/null || die "go is not installed; install Go >= 1.22"
  command -v cargo >/dev/null || die "cargo is not installed; install Rust with rustup"
  log "building influxd $INFLUX_VERSION from the Go module proxy (first time: 20-35 min, several GB)"
  mkdir -p "$BUILD_DIR/src" "$BUILD_DIR/bin"
  cd "$BUILD_DIR/src"
  # A wrapper module: influxdb's own go.mod has a replace directive, so `go install pkg@v` is
  # refused; a dependency's replace directives are ignored, so building it from here works.
  if [ ! -f go.mod ]; then
    cat > go.mod <<GOMOD
module smartcity.local/influxd-build

go 1.22
GOMOD
  fi
  go get "github.com/influxdata/influxdb/v2/cmd/influxd@$INFLUX_VERSION" \
         "github.com/influxdata/pkg-config@$PKGCONFIG_VERSION"
  go build -o "$BUILD_DIR/bin/pkg-config" github.com/influxdata/pkg-config
  # Flux's Rust library: pin the installed stable toolchain (flux's rust-toolchain.toml pins an old
  # one rustup would try to download) and cap lints so newer warnings don't fail flux's
  # `deny(warnings)`. RUSTFLAGS is not enough: the helper passes --target, and cargo then leaves
  # RUSTFLAGS off host artifacts, and flux-core is also built for the host (a build-dependency).
  # A rustc wrapper caps lints on every crate cargo has not capped already.
  cat > "$BUILD_DIR/bin/rustc-cap-lints" <<'WRAP'
#!/bin/sh
# rustc wrapper: cap lints at warn unless cargo already passed --cap-lints (registry crates)
rustc="$1"; shift
case " $* " in *" --cap-lints "*) exec "$rustc" "$@" ;; esac
exec "$rustc" "$@" --cap-lints warn
WRAP
  chmod +x "$BUILD_DIR/bin/rustc-cap-lints"
  local stable
  stable="$(rustup show active-toolchain 2>/dev/null | awk '{print $1}')"
  PKG_CONFIG="$BUILD_DIR/bin/pkg-config" RUSTC_WRAPPER="$BUILD_DIR/bin/rustc-cap-lints" \
  RUSTUP_TOOLCHAIN="${stable:-stable}" CGO_ENABLED=1 \
    go build -tags sqlite_foreign_keys,sqlite_json -o "$BIN.tmp" \
      -ldflags "-X main.version=${INFLUX_VERSION#v} -X main.commit=go-module-proxy" \
      github.com/influxdata/influxdb/v2/cmd/influxd
  mv "$BIN.tmp" "$BIN"
  log "built $BIN"
}

token_file() { echo "$STACK_DIR/secrets/influx-token"; }

setup() {
  local token password
  token="$(secret influx-token)"
  password="$(secret influx-admin-password)"
  local allowed
  allowed=$(curl -fsS "http://127.0.0.1:$INFLUX_PORT/api/v2/setup" | python3 -c 'import json,sys; print(json.load(sys.stdin)["allowed"])')
  if [ "$allowed" = "True" ]; then
    log "first-time setup: org=$ORG bucket=telemetry (+compliance)"
    curl -fsS -X POST "http://127.0.0.1:$INFLUX_PORT/api/v2/setup" -H 'Content-Type: application/json' \
      -d "{\"username\":\"admin\",\"password\":\"$password\",\"org\":\"$ORG\",\"bucket\":\"telemetry\",\"token\":\"$token\",\"retentionPeriodSeconds\":0}" >/dev/null \
      || die "setup failed"
  fi
  # The compliance bucket (aggregates, kept forever) - create if missing.
  local org_id
  org_id=$(curl -fsS "http://127.0.0.1:$INFLUX_PORT/api/v2/orgs?org=$ORG" -H "Authorization: Token $token" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["orgs"][0]["id"])') || die "cannot read org $ORG with the stack token"
  for b in compliance; do
    # (a name filter that matches nothing answers 404 with an error body: both mean "missing")
    if ! curl -sS "http://127.0.0.1:$INFLUX_PORT/api/v2/buckets?name=$b&orgID=$org_id" -H "Authorization: Token $token" \
         | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("buckets") else 1)'; then
      curl -fsS -X POST "http://127.0.0.1:$INFLUX_PORT/api/v2/buckets" -H "Authorization: Token $token" \
        -H 'Content-Type: application/json' -d "{\"orgID\":\"$org_id\",\"name\":\"$b\",\"retentionRules\":[]}" >/dev/null
      log "created bucket $b"
    fi
  done
}

start() {
  build
  if pid_alive "$PIDFILE" && port_open "$INFLUX_PORT"; then
    log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$INFLUX_PORT"
  else
    port_open "$INFLUX_PORT" && die "port $INFLUX_PORT is taken by another process; stop it or set SMARTCITY_INFLUX_PORT"
    mkdir -p "$DATA"
    log "starting on 127.0.0.1:$INFLUX_PORT, data in $DATA"
    nohup "$BIN" --bolt-path "$DATA/influxd.bolt" --engine-path "$DATA/engine" \
      --sqlite-path "$DATA/influxd.sqlite" --http-bind-address "127.0.0.1:$INFLUX_PORT" \
      --reporting-disabled --log-level warn >"$LOGFILE" 2>&1 &
    echo $! > "$PIDFILE"
    wait_port "$INFLUX_PORT" 60 "$LOGFILE"
    for _ in $(seq 1 100); do
      curl -fsS "http://127.0.0.1:$INFLUX_PORT/health" 2>/dev/null | grep -q '"pass"' && break
      sleep 0.2
    done
  fi
  setup
}

stop() {
  if pid_alive "$PIDFILE"; then
    kill "$(cat "$PIDFILE")"; log "stopped"
    for _ in $(seq 1 50); do pid_alive "$PIDFILE" || break; sleep 0.2; done
  fi
  rm -f "$PIDFILE"
}

case "${1:-start}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 {build|start|stop}" ;;
esac
