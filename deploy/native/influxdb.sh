#!/usr/bin/env bash
# Build (once, cached by version) and start InfluxDB 2.7 OSS from the Go module proxy and crates.io,
# then run the one-time setup (org, buckets, operator token, least-privilege credentials per service).
# Idempotent.
#   deploy/native/influxdb.sh build   # only build/cache the binary
#   deploy/native/influxdb.sh start   # build if needed, start, set up
#   deploy/native/influxdb.sh stop
#   deploy/native/influxdb.sh token NAME PERM...   # a token allowed exactly PERM (read:<bucket> or
#                                                  # write:<bucket>), kept in secrets/influx-token-NAME
#   deploy/native/influxdb.sh v1 NAME BUCKET...    # a v1 user smartcity-NAME that may only write BUCKET...
#                                                  # (cannot delete them), password in secrets/influx-v1-NAME
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

# api METHOD PATH [JSON] -> the response body of an InfluxDB API call made with the operator token
api() {
  curl -fsS -X "$1" "http://127.0.0.1:$INFLUX_PORT$2" -H "Authorization: Token $(secret influx-token)" \
    -H 'Content-Type: application/json' ${3:+-d "$3"}
}

# load_org -> ORG_ID is the id of the org (read once: the helpers below use it)
load_org() {
  ORG_ID=$(api GET "/api/v2/orgs?org=$ORG" | python3 -c 'import json,sys; print(json.load(sys.stdin)["orgs"][0]["id"])') \
    || die "cannot read org $ORG with the stack token"
}

# bucket_id NAME -> the id of bucket NAME of the org, or empty (a name filter that matches nothing
# answers 404 with an error body: both mean "missing")
bucket_id() {
  curl -sS "http://127.0.0.1:$INFLUX_PORT/api/v2/buckets?name=$1&orgID=$ORG_ID" -H "Authorization: Token $(secret influx-token)" \
    | python3 -c 'import json,sys; b=json.load(sys.stdin).get("buckets"); print(b[0]["id"] if b else "")'
}

# find_auth PATH KEY VALUE WANT -> "<id> same|differs" of the active authorization listed at PATH whose
# KEY is VALUE (token or v1 user), comparing its permissions with WANT ("action:bucketid ..."); empty: none
find_auth() {
  api GET "$1?orgID=$ORG_ID" | KEY="$2" VALUE="$3" WANT="$4" python3 -c '
import json, os, sys
want = set(os.environ["WANT"].split())
for a in json.load(sys.stdin)["authorizations"]:
    if a[os.environ["KEY"]] == os.environ["VALUE"] and a["status"] == "active":
        have = {p["action"] + ":" + p["resource"].get("id", "*") + ("" if p["resource"]["type"] == "buckets" else "!")
                for p in a["permissions"]}
        print(a["id"], "same" if have == want else "differs")
        break'
}

# permissions PERM... -> "action:bucketid ..." for read:<bucket> | write:<bucket>, dying on a missing bucket
permissions() {
  local perm action bucket id out=""
  for perm in "$@"; do
    action=${perm%%:*}; bucket=${perm#*:}
    case "$action" in read|write) ;; *) die "permission $perm: use read:<bucket> or write:<bucket>" ;; esac
    id=$(bucket_id "$bucket")
    [ -n "$id" ] || die "no bucket $bucket in org $ORG"
    out="$out $action:$id"
  done
  echo "${out# }"
}

# as_json "action:bucketid ..." -> the permissions array of an authorization of the org
as_json() {
  ORG_ID="$ORG_ID" python3 -c '
import json, os, sys
print(json.dumps([{"action": p.split(":")[0], "resource": {"type": "buckets", "id": p.split(":")[1], "orgID": os.environ["ORG_ID"]}}
                  for p in sys.argv[1].split()]))' "$1"
}

# service_token NAME PERM... -> secrets/influx-token-NAME holds a v2 token of the org allowed exactly
# PERM (read:<bucket> | write:<bucket>): no other bucket, no bucket creation, no tokens, users or other
# orgs. Kept while InfluxDB knows it with exactly these rights, so running services keep working; a
# token with other rights (e.g. the write a stack before v1 credentials gave) is replaced and revoked.
# InfluxDB 2.x ties deleting a bucket (and its data) to write permission on it: services write with
# v1 credentials (v1_credential) and get v2 tokens only to read.
service_token() {
  local name=$1; shift
  local f="$STACK_DIR/secrets/influx-token-$name" want found=""
  want=$(permissions "$@")
  [ -s "$f" ] && found=$(find_auth /api/v2/authorizations token "$(cat "$f")" "$want")
  [ "${found#* }" = same ] && return 0
  mkdir -p "$STACK_DIR/secrets"; chmod 700 "$STACK_DIR/secrets"
  (umask 077; api POST /api/v2/authorizations \
     "{\"orgID\":\"$ORG_ID\",\"description\":\"smartcity:$name\",\"permissions\":$(as_json "$want")}" \
     | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' > "$f.new") && mv "$f.new" "$f" \
    || die "could not create the $name token"
  [ -n "$found" ] && api DELETE "/api/v2/authorizations/${found%% *}" && log "revoked the $name token with other rights"
  log "token for $name: $*"
}

# retire_token NAME -> revoke secrets/influx-token-NAME and remove it (a service that no longer reads)
retire_token() {
  local f="$STACK_DIR/secrets/influx-token-$1" found=""
  [ -s "$f" ] || return 0
  found=$(find_auth /api/v2/authorizations token "$(cat "$f")" "")
  [ -n "$found" ] && api DELETE "/api/v2/authorizations/${found%% *}"
  rm -f "$f"
  log "revoked the $1 token (the service reads nothing; it writes with its v1 credential)"
}

# v1_credential NAME BUCKET... -> a v1 (legacy) user smartcity-NAME allowed only to write BUCKET...,
# through /write?db=<bucket> with HTTP Basic auth; its password is secrets/influx-v1-NAME (mode 600).
# Unlike a v2 write permission it cannot delete the buckets. Kept (password reset to the same secret)
# while it has exactly these rights, else replaced.
v1_credential() {
  local name=$1; shift
  local user="smartcity-$name" want found="" bucket id password
  want=$(permissions "${@/#/write:}")
  password=$(secret "influx-v1-$name")
  found=$(find_auth /private/legacy/authorizations token "$user" "$want")
  if [ "${found#* }" != same ]; then
    [ -n "$found" ] && api DELETE "/private/legacy/authorizations/${found%% *}"
    found=$(api POST /private/legacy/authorizations \
      "{\"orgID\":\"$ORG_ID\",\"token\":\"$user\",\"description\":\"smartcity:$name v1 write-only\",\"permissions\":$(as_json "$want")}" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') || die "could not create the v1 user $user"
    log "v1 write-only user $user: $*"
  fi
  api POST "/private/legacy/authorizations/${found%% *}/password" "{\"password\":\"$password\"}" >/dev/null \
    || die "could not set the password of the v1 user $user"
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
  load_org
  # The compliance bucket (aggregates, kept forever) - create if missing.
  local b
  for b in compliance; do
    if [ -z "$(bucket_id "$b")" ]; then
      api POST /api/v2/buckets "{\"orgID\":\"$ORG_ID\",\"name\":\"$b\",\"retentionRules\":[]}" >/dev/null
      log "created bucket $b"
    fi
  done
  # Per service (see SERVICES in README: who writes what): a v1 write-only credential for exactly the
  # buckets it writes, and a v2 token only for what it reads (the bridge and the router read nothing).
  v1_credential bridge compliance
  v1_credential processor telemetry compliance
  v1_credential router compliance
  service_token processor read:telemetry read:compliance
  retire_token bridge
  retire_token router
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
  token) shift; [ $# -ge 2 ] || die "usage: $0 token NAME PERM..."; load_org; service_token "$@" ;;
  v1) shift; [ $# -ge 2 ] || die "usage: $0 v1 NAME BUCKET..."; load_org; v1_credential "$@" ;;
  *) die "usage: $0 {build|start|stop|token NAME PERM...|v1 NAME BUCKET...}" ;;
esac
