#!/usr/bin/env bash
# Build (once, cached by version) and start InfluxDB 2.7 OSS from the Go module proxy and crates.io,
# then run the one-time setup (org, buckets, operator token, one least-privilege token per service).
# Idempotent.
#   deploy/native/influxdb.sh build   # only build/cache the binary
#   deploy/native/influxdb.sh start   # build if needed, start, set up
#   deploy/native/influxdb.sh stop
#   deploy/native/influxdb.sh token NAME PERM...   # a token allowed exactly PERM (read:<bucket> or
#                                                  # write:<bucket>), kept in secrets/influx-token-NAME
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

# api METHOD PATH [JSON] -> the response body of an InfluxDB API call made with the operator token
api() {
  curl -fsS -X "$1" "http://127.0.0.1:$INFLUX_PORT$2" -H "Authorization: Token $(secret influx-token)" \
    -H 'Content-Type: application/json' ${3:+-d "$3"}
}

# service_token NAME PERM... -> secrets/influx-token-NAME holds a token of the org allowed exactly
# PERM (read:<bucket> | write:<bucket>, by bucket id): no other bucket, no bucket creation, no
# tokens, users or other orgs. Kept while InfluxDB still knows it, so running services keep working.
# InfluxDB 2.x ties deleting a bucket (and its data) to write permission on it: a service can still
# delete the buckets it writes; the chaos suite's security checks report that.
service_token() {
  local name=$1; shift
  local f="$STACK_DIR/secrets/influx-token-$name" org_id
  org_id=$(api GET "/api/v2/orgs?org=$ORG" | python3 -c 'import json,sys; print(json.load(sys.stdin)["orgs"][0]["id"])')
  if [ -s "$f" ] && api GET "/api/v2/authorizations?orgID=$org_id" | TOKEN="$(cat "$f")" python3 -c \
       'import json,os,sys; sys.exit(0 if any(a["token"] == os.environ["TOKEN"] and a["status"] == "active" for a in json.load(sys.stdin)["authorizations"]) else 1)'; then
    return 0
  fi
  local perms="" perm action bucket bucket_id
  for perm in "$@"; do
    action=${perm%%:*}; bucket=${perm#*:}
    case "$action" in read|write) ;; *) die "permission $perm: use read:<bucket> or write:<bucket>" ;; esac
    bucket_id=$(curl -sS "http://127.0.0.1:$INFLUX_PORT/api/v2/buckets?name=$bucket&orgID=$org_id" \
      -H "Authorization: Token $(secret influx-token)" \
      | python3 -c 'import json,sys; b=json.load(sys.stdin).get("buckets"); print(b[0]["id"] if b else "")')
    [ -n "$bucket_id" ] || die "no bucket $bucket in org $ORG for the $name token"
    perms="$perms{\"action\":\"$action\",\"resource\":{\"type\":\"buckets\",\"id\":\"$bucket_id\",\"orgID\":\"$org_id\"}},"
  done
  mkdir -p "$STACK_DIR/secrets"; chmod 700 "$STACK_DIR/secrets"
  (umask 077; api POST /api/v2/authorizations \
     "{\"orgID\":\"$org_id\",\"description\":\"smartcity:$name\",\"permissions\":[${perms%,}]}" \
     | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' > "$f.new") && mv "$f.new" "$f" \
    || die "could not create the $name token"
  log "token for $name: $*"
}

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
  # One token per service, allowed only what it does (see SERVICES in README: who writes what).
  service_token bridge write:compliance
  service_token processor read:telemetry write:telemetry read:compliance write:compliance
  service_token router write:compliance
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
  token) shift; [ $# -ge 2 ] || die "usage: $0 token NAME PERM..."; service_token "$@" ;;
  *) die "usage: $0 {build|start|stop|token NAME PERM...}" ;;
esac
