#!/usr/bin/env bash
# Resolve Apache Kafka 4.x from Maven Central (cached), format KRaft storage once, start a single
# combined broker/controller on loopback and create the pipeline's topics. Idempotent.
#   deploy/native/kafka.sh {start|stop|topics|broker|resolve}   (broker: start without creating/configuring topics)
SERVICE=kafka
source "$(dirname "$0")/lib.sh"

POM="$REPO_ROOT/deploy/native/kafka/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
DIR="$STACK_DIR/kafka"
PIDFILE="$DIR/kafka.pid"
LOGFILE="$DIR/kafka.out"
HEAP="${SMARTCITY_KAFKA_HEAP:-768m}"
# Seconds to wait for the broker to listen and answer (log recovery is slow on a busy machine).
START_TIMEOUT="${SMARTCITY_KAFKA_START_TIMEOUT:-300}"
# the topic list (its {domain} row expanded from the registry); the chaos suite's lanes pass /dev/null and make their own
TOPICS_FILE="${SMARTCITY_TOPICS_FILE:-$CONFIG_DIR/topics.txt}"

resolve() {
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven) and OpenJDK 17"
  log "resolving kafka_2.13 $KAFKA_VERSION and its runtime dependencies from Maven Central (1-3 min the first time)"
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  mvn -B -q -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS" \
    || die "maven could not resolve Kafka $KAFKA_VERSION (see output above)"
  touch "$LIBS/.complete"
  log "$(ls "$LIBS"/*.jar | wc -l) jars in $LIBS"
}

kjava() {  # kjava MAINCLASS ARGS... -> run a Kafka main class on the resolved classpath
  java -Xmx256m -cp "$LIBS/*" -Dlog4j2.configurationFile="$CONFIG_DIR/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$DIR" "$@"
}

configure() {
  mkdir -p "$DIR/data"
  sed -e "s#@LOG_DIR@#$DIR/data#" -e "s#@HOST@#127.0.0.1#g" -e "s#@ADVERTISED_HOST@#127.0.0.1#" \
      -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
      "$CONFIG_DIR/kafka/server.properties" > "$DIR/server.properties"
  if [ ! -f "$DIR/data/meta.properties" ]; then
    local cluster_id
    cluster_id="$(kjava kafka.tools.StorageTool random-uuid)"
    log "formatting KRaft storage (cluster $cluster_id)"
    kjava kafka.tools.StorageTool format -t "$cluster_id" -c "$DIR/server.properties" >/dev/null \
      || die "storage format failed"
  fi
}

# broker_ready -> 0 when the broker answers a metadata request (not just an open port)
broker_ready() {
  kjava org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1
}

# topics: create the topics of topics.txt that do not exist; set the listed configs on those that do
# (idempotent: a changed retention reaches topics made by older versions). One Python admin client,
# not a JVM per topic.
topics() {
  grep -qv '^#' "$TOPICS_FILE" 2>/dev/null || return 0
  local out line
  out="$(registry ensure-topics "127.0.0.1:$KAFKA_PORT" "$TOPICS_FILE")" || die "could not create the topics of $TOPICS_FILE"
  while read -r line; do
    [ -n "$line" ] && log "$line"
  done <<<"$out"
}

# broker: start (or find running) the broker and wait until it answers; topics are left alone
broker() {
  command -v java >/dev/null || die "java not found: install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
  resolve
  if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT"; then
    log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"
  else
    port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; stop it or set SMARTCITY_KAFKA_PORT"
    configure
    log "starting Kafka $KAFKA_VERSION (KRaft) on 127.0.0.1:$KAFKA_PORT, data in $DIR/data"
    nohup java -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -cp "$LIBS/*" \
      -Dlog4j2.configurationFile="$CONFIG_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$DIR" \
      kafka.Kafka "$DIR/server.properties" >"$LOGFILE" 2>&1 &
    echo $! > "$PIDFILE"
    # recovery of a broker with many topic folders takes minutes on a busy 2-core box
    wait_port "$KAFKA_PORT" "$START_TIMEOUT" "$DIR/server.log"
  fi
  for _ in $(seq 1 "$START_TIMEOUT"); do broker_ready && break; sleep 1; done
  broker_ready || die "broker on 127.0.0.1:$KAFKA_PORT does not answer metadata requests (log: $DIR/server.log)"
}

start() {
  broker
  topics
}

stop() {
  if pid_alive "$PIDFILE"; then
    kill "$(cat "$PIDFILE")"; log "stopping (controlled shutdown)"
    for _ in $(seq 1 150); do pid_alive "$PIDFILE" || break; sleep 0.2; done
    pid_alive "$PIDFILE" && kill -9 "$(cat "$PIDFILE")"
  fi
  rm -f "$PIDFILE"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  topics) topics ;;
  broker) broker ;;
  resolve) resolve ;;   # only the jars (the chaos suite resolves before entering its namespace)
  *) die "usage: $0 {start|stop|topics|broker|resolve}" ;;
esac
