#!/bin/bash
# Compose: the influxdb image runs this once, right after its first setup (/docker-entrypoint-initdb.d,
# with the influx CLI set up for the new instance and the admin token). The same credentials as
# deploy/native/influxdb.sh: the compliance bucket, per service a v1 (legacy) user allowed only to
# write its buckets (a v2 write permission could delete the bucket), and a v2 token for what the
# processor reads. Secrets go to the influx-credentials volume (/credentials, mode 600), which the
# pipeline containers mount as their .stack/secrets; nothing secret is printed.
# An existing influxdb-data volume skips this script: remove both volumes to regenerate.
set -euo pipefail
org="$DOCKER_INFLUXDB_INIT_ORG"
influx bucket create --org "$org" --name compliance --retention 0 >/dev/null
bucket_id() { influx bucket list --org "$org" --name "$1" --hide-headers | cut -f1; }
telemetry=$(bucket_id telemetry)
compliance=$(bucket_id compliance)
umask 077
v1_user() {   # v1_user SERVICE BUCKET_ID... -> smartcity-SERVICE may only write the buckets
  local service=$1; shift
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "/credentials/influx-v1-$service"
  influx v1 auth create --org "$org" --username "smartcity-$service" \
    --password "$(cat "/credentials/influx-v1-$service")" "${@/#/--write-bucket=}" >/dev/null
}
v1_user bridge "$compliance"
v1_user processor "$telemetry" "$compliance"
v1_user router "$compliance"
influx auth create --org "$org" --description smartcity:processor \
  --read-bucket "$telemetry" --read-bucket "$compliance" --hide-headers | cut -f3 > /credentials/influx-token-processor
