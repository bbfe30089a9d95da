#!/usr/bin/env bash
# Resolve Apache Kafka 4.x from Maven Central (cached), format KRaft storage once, start a single
# combined broker/controller on loopback and create the pipeline's topics. Idempotent.
#   deploy/native/kafka.sh {start|stop|topics|broker|resolve}   (broker: start without creating/configuring topics)
#   deploy/native/kafka.sh cluster {start|stop|status|kill N|stop-node N|controller}
#     three combined broker+controller nodes on 127.0.0.1:$SMARTCITY_KAFKA_CLUSTER_PORT.. (default
#     29092-29094, controllers +100), replication factor 3, min.insync.replicas 2; data in
#     $STACK_DIR/kafka-cluster/node<N>. start starts the nodes that are down; kill N: SIGKILL;
#     controller: prints the node id of the active controller; reassign JSON: moves partitions and leaders.
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

CLUSTER_DIR="$STACK_DIR/kafka-cluster"
CLUSTER_PORT="${SMARTCITY_KAFKA_CLUSTER_PORT:-29092}"
CLUSTER_HEAP="${SMARTCITY_KAFKA_CLUSTER_HEAP:-384m}"
NODES="1 2 3"
node_port() { echo $((CLUSTER_PORT + $1 - 1)); }
node_ctl_port() { echo $((CLUSTER_PORT + 100 + $1 - 1)); }
cluster_bootstrap() { local n b=""; for n in $NODES; do b="${b:+$b,}127.0.0.1:$(node_port "$n")"; done; echo "$b"; }

# cluster_configure N -> node N's server.properties, its storage formatted once with the cluster's id
cluster_configure() {
  local n=$1 d="$CLUSTER_DIR/node$1" voters="" m
  for m in $NODES; do voters="${voters:+$voters,}$m@127.0.0.1:$(node_ctl_port "$m")"; done
  mkdir -p "$d/data"
  sed -e "s#@NODE_ID@#$n#" -e "s#@VOTERS@#$voters#" -e "s#@PORT@#$(node_port "$n")#g" \
      -e "s#@CONTROLLER_PORT@#$(node_ctl_port "$n")#g" -e "s#@LOG_DIR@#$d/data#" \
      "$CONFIG_DIR/kafka/cluster.properties" > "$d/server.properties"
  [ -s "$CLUSTER_DIR/cluster.id" ] || kjava kafka.tools.StorageTool random-uuid > "$CLUSTER_DIR/cluster.id"
  if [ ! -f "$d/data/meta.properties" ]; then
    kjava kafka.tools.StorageTool format -t "$(cat "$CLUSTER_DIR/cluster.id")" -c "$d/server.properties" >/dev/null \
      || die "storage format of cluster node $n failed"
  fi
}

cluster_start() {
  command -v java >/dev/null || die "java not found: install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
  resolve
  mkdir -p "$CLUSTER_DIR"
  local n started=""
  for n in $NODES; do
    if pid_alive "$CLUSTER_DIR/node$n/kafka.pid" && port_open "$(node_port "$n")"; then continue; fi
    port_open "$(node_port "$n")" && die "port $(node_port "$n") is taken by another process; set SMARTCITY_KAFKA_CLUSTER_PORT"
    cluster_configure "$n"
    nohup java -Xms128m -Xmx"$CLUSTER_HEAP" -XX:+UseG1GC -cp "$LIBS/*" \
      -Dlog4j2.configurationFile="$CONFIG_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$CLUSTER_DIR/node$n" \
      kafka.Kafka "$CLUSTER_DIR/node$n/server.properties" >"$CLUSTER_DIR/node$n/kafka.out" 2>&1 &
    echo $! > "$CLUSTER_DIR/node$n/kafka.pid"
    started="$started $n"
  done
  [ -n "$started" ] && log "starting cluster nodes$started (KRaft, broker+controller each) on $(cluster_bootstrap)"
  for n in $started; do wait_port "$(node_port "$n")" "$START_TIMEOUT" "$CLUSTER_DIR/node$n/server.log"; done
  # ready: every node answers, and the quorum has a leader (a metadata request through the whole cluster)
  for _ in $(seq 1 "$START_TIMEOUT"); do
    kjava org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$(cluster_bootstrap)" 2>/dev/null \
      | grep -c '^127.0.0.1:' | grep -qx 3 && return 0
    sleep 1
  done
  die "the cluster on $(cluster_bootstrap) does not have 3 brokers answering (logs: $CLUSTER_DIR/node*/server.log)"
}

# cluster_node_stop N SIGNAL -> stops node N (TERM: controlled shutdown; KILL: crash) and waits for its exit
cluster_node_stop() {
  local pidfile="$CLUSTER_DIR/node$1/kafka.pid"
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid; pid="$(cat "$pidfile")"
  kill "-$2" "$pid"
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$pidfile"
  log "cluster node $1 stopped ($2)"
}

# cluster_controller -> the node id of the active controller (the KRaft quorum's leader)
cluster_controller() {
  kjava org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-server "$(cluster_bootstrap)" describe --status \
    | sed -n 's/^LeaderId: *\([0-9]*\).*/\1/p'
}

# cluster_reassign JSON -> applies a partition reassignment (kafka-reassign-partitions' JSON), waits
# until it is complete, then elects the preferred (first) replicas leaders: the leaders move
cluster_reassign() {
  local b; b="$(cluster_bootstrap)"
  kjava org.apache.kafka.tools.reassign.ReassignPartitionsCommand --bootstrap-server "$b" \
    --reassignment-json-file "$1" --execute >/dev/null || die "reassignment of $1 failed"
  for _ in $(seq 1 120); do
    kjava org.apache.kafka.tools.reassign.ReassignPartitionsCommand --bootstrap-server "$b" \
      --reassignment-json-file "$1" --verify 2>/dev/null | grep -q "is still in progress" || break
    sleep 1
  done
  kjava org.apache.kafka.tools.LeaderElectionCommand --bootstrap-server "$b" --election-type PREFERRED \
    --path-to-json-file "$1" >/dev/null 2>&1 || true   # "already the leader" exits non-zero
  log "reassigned the partitions of $1, preferred leaders elected"
}

cluster() {
  case "${1:-start}" in
    reassign) cluster_reassign "${2:?reassignment json}" ;;
    start) cluster_start ;;
    stop) # all at once: the last node alone would wait for a controller quorum that is gone
          for n in $NODES; do pid_alive "$CLUSTER_DIR/node$n/kafka.pid" && kill "$(cat "$CLUSTER_DIR/node$n/kafka.pid")"; done
          for n in $NODES; do cluster_node_stop "$n" TERM; done ;;
    status) for n in $NODES; do
              if pid_alive "$CLUSTER_DIR/node$n/kafka.pid"; then echo "node $n up 127.0.0.1:$(node_port "$n")"
              else echo "node $n down"; fi
            done ;;
    kill) cluster_node_stop "${2:?node id}" KILL ;;
    stop-node) cluster_node_stop "${2:?node id}" TERM ;;
    controller) cluster_controller ;;
    bootstrap) cluster_bootstrap ;;
    *) die "usage: $0 cluster {start|stop|status|kill N|stop-node N|controller|bootstrap}" ;;
  esac
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  topics) topics ;;
  broker) broker ;;
  resolve) resolve ;;   # only the jars (the chaos suite resolves before entering its namespace)
  cluster) shift; cluster "$@" ;;
  *) die "usage: $0 {start|stop|topics|broker|resolve|cluster ...}" ;;
esac
