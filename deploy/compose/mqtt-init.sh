#!/bin/sh
# Compose init job: build /mosquitto/config (listeners + shared settings, ACL, passwords from the
# environment, a local CA and server certificate). Runs in the eclipse-mosquitto image.
set -eu
cfg=/mosquitto/config
mkdir -p "$cfg/certs" "$cfg/data"
cat /deploy/compose/mosquitto-listeners.conf /deploy/config/mosquitto/mosquitto.conf > "$cfg/mosquitto.conf"
cp /deploy/config/mosquitto/acl "$cfg/acl"
(umask 077; : > "$cfg/passwd")   # 2.0.21 warns that a later version will refuse readable files
chmod 600 "$cfg/acl"
# device accounts: one per domain plug-in, listed by the compose `registry` job
for user in bridge router subscriber field lorawan $(cat /registry/accounts); do
  mosquitto_passwd -b "$cfg/passwd" "$user" "${MQTT_PASSWORD:?set MQTT_PASSWORD in .env}"
done
if [ ! -s "$cfg/certs/server.crt" ]; then
  apk add --no-cache openssl >/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=smartcity-local-ca \
    -keyout "$cfg/certs/ca.key" -out "$cfg/certs/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=mosquitto -keyout "$cfg/certs/server.key" -out "$cfg/certs/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:mosquitto,DNS:localhost,IP:127.0.0.1\n' > "$cfg/certs/san.ext"
  openssl x509 -req -in "$cfg/certs/server.csr" -CA "$cfg/certs/ca.crt" -CAkey "$cfg/certs/ca.key" \
    -CAcreateserial -days 3650 -extfile "$cfg/certs/san.ext" -out "$cfg/certs/server.crt" 2>/dev/null
fi
chown -R mosquitto:mosquitto "$cfg"
