#!/usr/bin/env bash
# Build (once, cached by version) Telegraf, the benchmark's peer, from the Go module proxy with only
# the plugins the bench uses. Idempotent: a cached binary is reused. Prints the binary's path.
#   deploy/native/telegraf.sh build   # build if missing, print the path
#   deploy/native/telegraf.sh path    # print the path (exit 1 when not built yet)
SERVICE=telegraf
source "$(dirname "$0")/lib.sh"

TELEGRAF_VERSION="${SMARTCITY_TELEGRAF_VERSION:-v1.37.2}"
BUILD_DIR="$CACHE_DIR/telegraf-$TELEGRAF_VERSION"
BIN="$BUILD_DIR/bin/telegraf"
# Only what the bench configures: the two inputs, the two outputs and their data formats.
PLUGINS="custom,inputs.mqtt_consumer,inputs.kafka_consumer,outputs.kafka,outputs.influxdb_v2"
PLUGINS="$PLUGINS,parsers.json,parsers.json_v2,parsers.influx,serializers.influx,serializers.json"

build() {
  if [ -x "$BIN" ]; then log "cached binary $BIN ($TELEGRAF_VERSION)"; echo "$BIN"; return 0; fi
  command -v go >/dev/null || die "go is not installed; install Go >= 1.24 (Telegraf $TELEGRAF_VERSION needs it)"
  log "building telegraf $TELEGRAF_VERSION from the Go module proxy with tags $PLUGINS (first time: 2-10 min)"
  mkdir -p "$BUILD_DIR/tmp"
  # Install into a scratch GOBIN and move into place only when complete: an interrupted build never
  # leaves a half-written binary that the next run would take for a cached one.
  GOBIN="$BUILD_DIR/tmp" go install -tags "$PLUGINS" "github.com/influxdata/telegraf/cmd/telegraf@$TELEGRAF_VERSION" \
    || die "go install github.com/influxdata/telegraf/cmd/telegraf@$TELEGRAF_VERSION failed (see above); check GOPROXY and the Go version"
  mkdir -p "$BUILD_DIR/bin"
  mv "$BUILD_DIR/tmp/telegraf" "$BIN"
  rmdir "$BUILD_DIR/tmp" 2>/dev/null || true
  "$BIN" --version >&2 || die "built $BIN but it does not run"
  log "built $BIN"
  echo "$BIN"
}

case "${1:-build}" in
  build) build ;;
  path) [ -x "$BIN" ] || die "telegraf $TELEGRAF_VERSION is not built yet; run deploy/native/telegraf.sh build"; echo "$BIN" ;;
  *) die "usage: $0 build|path (got '${1}')" ;;
esac
