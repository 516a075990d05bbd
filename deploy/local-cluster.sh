#!/usr/bin/env bash
# local-cluster.sh: the topology the Helm chart (helm/atplatform) deploys, as local processes.
#
#   deploy/local-cluster.sh up     [DIR]   start (or complete) the cluster, wait until ready
#   deploy/local-cluster.sh down   [DIR]   stop it: SIGTERM, then SIGKILL after a bound
#   deploy/local-cluster.sh status [DIR]   list the processes, their addresses and readiness
#
# DIR (default: data/local-cluster under the repository root) holds everything: the configs
# (directory.toml, node1.toml..node3.toml, redis.conf), the cluster CA (ca/), each process's
# data dir, pid files (run/), logs (logs/) and the chosen ports (cluster.env).
#
# What runs (default ports; see "Settings" below to move them):
#
#   redis-server    127.0.0.1:6390        appendonly yes, appendfsync always, data in DIR/redis
#   at-directory    127.0.0.1:6464 (TLS)  on Redis; /metrics, /readyz, status API on :9464
#   at-server 1     127.0.0.1:6465        on the same Redis; /metrics, /readyz on 127.0.0.1:9465
#   at-server 2     127.0.0.2:6466        ...                                  127.0.0.1:9466
#   at-server 3     127.0.0.3:6467        ...                                  127.0.0.1:9467
#
# plus one port per provisioned atSign (25000, 25001, ...) on EVERY node's own address.
# One cluster CA (`at-server ca-create`, made once) issues the certificates of the directory
# and of every node at each start; clients trust DIR/ca/ca.pem for all of them.
#
# Routing: why per-node loopback addresses and per-atSign ports, not SNI.
#   In Kubernetes the nodes sit behind one load-balanced port and clients reach an atSign by its
#   SNI name `<uuid>.<sni_domain>`, which needs wildcard DNS. Locally there is none:
#   `<label>.localhost` does not resolve through glibc (`getent hosts abc.localhost` fails on a
#   stock Debian), so an SDK could not connect to the name the directory hands out. Per-atSign
#   ports (`port_range_start`) need no DNS: the directory hands out `127.0.0.1:25000`. But every
#   node follows provisioning through Redis and binds each atSign's port on its own listen
#   address, so three nodes on one address would collide (and a node restarting would fail to
#   start). Hence each node listens on an address of its own: 127.0.0.1, 127.0.0.2, 127.0.0.3
#   (Linux routes all of 127.0.0.0/8 to the loopback; on macOS add the aliases first:
#   `sudo ifconfig lo0 alias 127.0.0.2 up; sudo ifconfig lo0 alias 127.0.0.3 up`).
#   So @alice on port 25000 is served by node 1 on 127.0.0.1:25000, node 2 on 127.0.0.2:25000
#   and node 3 on 127.0.0.3:25000; the directory hands out the address of the node it was
#   provisioned through (its `public_host`). Every node's certificate names all three addresses.
#   With LOCAL_CLUSTER_SNI_DOMAIN set (for a domain that resolves, e.g. `localhost` under
#   systemd-resolved), nodes also route by SNI on their shared ports, and the directory hands
#   out `<uuid>.<domain>:<node 1's shared port>` instead (there is no load balancer locally;
#   the other nodes' shared ports answer the same names when connected to by address).
#
# Settings (environment; `up` saves them in DIR/cluster.env, and later runs on the same DIR
# reuse the saved values unless overridden):
#   LOCAL_CLUSTER_BASE_PORT          6464   directory; nodes use BASE+1..BASE+3
#   LOCAL_CLUSTER_METRICS_BASE_PORT  9464   directory's HTTP port; nodes use +1..+3
#   LOCAL_CLUSTER_REDIS_PORT         6390
#   LOCAL_CLUSTER_ATSIGN_PORT        25000  first per-atSign port
#   LOCAL_CLUSTER_ATSIGN_PORTS       100    how many per-atSign ports
#   LOCAL_CLUSTER_SNI_DOMAIN         ""     see above
#   LOCAL_CLUSTER_LOG                info   AT_SERVER_LOG / AT_DIRECTORY_LOG filter
#   LOCAL_CLUSTER_NODE_SETTINGS      ""     top-level TOML lines added to every node's config
#                                           (e.g. "max_connections = 30000"); this run only,
#                                           not saved
#   LOCAL_CLUSTER_START_TIMEOUT      60     seconds each process gets to become ready
#   LOCAL_CLUSTER_STOP_TIMEOUT       30     seconds each process gets after SIGTERM
#   AT_SERVER_BIN, AT_DIRECTORY_BIN         binaries; default target/release/* (CARGO_TARGET_DIR
#                                           honoured), brought up to date with cargo first
#   LOCAL_CLUSTER_NO_BUILD           unset  1: use target/release/* as they are, no cargo
#   REDIS_SERVER_BIN                 redis-server (on PATH)
#
# Needs: bash, curl, redis-server, ps; cargo only when the binaries must be built.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES=(1 2 3)

usage() {
    sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

log() { printf '%s\n' "$*"; }
warn() { printf 'local-cluster: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Settings and paths

# The absolute path of DIR ($2; made by 'up' only).
resolve_dir() {
    local command="$1" dir="${2:-$ROOT/data/local-cluster}"
    [[ "$command" != up ]] || mkdir -p "$dir"
    if [[ -d "$dir" ]]; then
        (cd "$dir" && pwd)
    elif [[ "$dir" = /* ]]; then
        echo "$dir"
    else
        echo "$PWD/$dir"
    fi
}

load_settings() {
    local saved_base="" saved_metrics="" saved_redis="" saved_atsign="" saved_atsigns=""
    local saved_sni="" saved_set=""
    if [[ -f "$DIR/cluster.env" ]]; then
        # Written by this script: KEY=value lines, values quoted with printf %q.
        while IFS='=' read -r key value; do
            case "$key" in
                BASE_PORT) saved_base="$value" ;;
                METRICS_BASE_PORT) saved_metrics="$value" ;;
                REDIS_PORT) saved_redis="$value" ;;
                ATSIGN_PORT) saved_atsign="$value" ;;
                ATSIGN_PORTS) saved_atsigns="$value" ;;
                SNI_DOMAIN) saved_sni="$value"; saved_set=1 ;;
            esac
        done <"$DIR/cluster.env"
    fi
    BASE_PORT="${LOCAL_CLUSTER_BASE_PORT:-${saved_base:-6464}}"
    METRICS_BASE_PORT="${LOCAL_CLUSTER_METRICS_BASE_PORT:-${saved_metrics:-9464}}"
    REDIS_PORT="${LOCAL_CLUSTER_REDIS_PORT:-${saved_redis:-6390}}"
    ATSIGN_PORT="${LOCAL_CLUSTER_ATSIGN_PORT:-${saved_atsign:-25000}}"
    ATSIGN_PORTS="${LOCAL_CLUSTER_ATSIGN_PORTS:-${saved_atsigns:-100}}"
    if [[ -n "${LOCAL_CLUSTER_SNI_DOMAIN+set}" ]]; then
        SNI_DOMAIN="$LOCAL_CLUSTER_SNI_DOMAIN"
    elif [[ -n "$saved_set" ]]; then
        SNI_DOMAIN="$saved_sni"
    else
        SNI_DOMAIN=""
    fi
    LOG_FILTER="${LOCAL_CLUSTER_LOG:-info}"
    START_TIMEOUT="${LOCAL_CLUSTER_START_TIMEOUT:-60}"
    STOP_TIMEOUT="${LOCAL_CLUSTER_STOP_TIMEOUT:-30}"
    local name
    for name in BASE_PORT METRICS_BASE_PORT REDIS_PORT ATSIGN_PORT ATSIGN_PORTS START_TIMEOUT \
        STOP_TIMEOUT; do
        if ! [[ "${!name}" =~ ^[0-9]+$ ]]; then
            warn "$name must be a number, not '${!name}'"
            exit 2
        fi
    done
    if ((BASE_PORT + 3 > 65535 || METRICS_BASE_PORT + 3 > 65535 || ATSIGN_PORTS < 1 ||
        ATSIGN_PORT + ATSIGN_PORTS > 65536)); then
        warn "ports out of range"
        exit 2
    fi
    if [[ -n "$SNI_DOMAIN" && ! "$SNI_DOMAIN" =~ ^[A-Za-z0-9.-]+$ ]]; then
        warn "LOCAL_CLUSTER_SNI_DOMAIN '$SNI_DOMAIN' is not a domain name"
        exit 2
    fi
}

save_settings() {
    {
        echo "BASE_PORT=$BASE_PORT"
        echo "METRICS_BASE_PORT=$METRICS_BASE_PORT"
        echo "REDIS_PORT=$REDIS_PORT"
        echo "ATSIGN_PORT=$ATSIGN_PORT"
        echo "ATSIGN_PORTS=$ATSIGN_PORTS"
        echo "SNI_DOMAIN=$SNI_DOMAIN"
    } >"$DIR/cluster.env"
}

node_ip() { echo "127.0.0.$1"; }
node_port() { echo $((BASE_PORT + $1)); }
node_metrics() { echo "127.0.0.1:$((METRICS_BASE_PORT + $1))"; }
directory_addr() { echo "127.0.0.1:$BASE_PORT"; }
directory_metrics() { echo "127.0.0.1:$METRICS_BASE_PORT"; }
redis_url() { echo "redis://127.0.0.1:$REDIS_PORT"; }

# What identifies each process in `ps` (so that a reused pid is never signalled).
pattern_of() {
    case "$1" in
        redis) echo "redis-server" ;;
        directory) echo "$DIR/directory.toml" ;;
        node*) echo "$DIR/$1.toml" ;;
    esac
}

pid_file() { echo "$DIR/run/$1.pid"; }

# The pid of component $1 if it runs (and is the process this script started), else nothing.
running_pid() {
    local file pid args
    file="$(pid_file "$1")"
    [[ -f "$file" ]] || return 0
    pid="$(<"$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    args="$(ps -o args= -p "$pid" 2>/dev/null || true)"
    if [[ -n "$args" && "$args" == *"$(pattern_of "$1")"* ]]; then
        echo "$pid"
    fi
}

# ---------------------------------------------------------------------------------------------
# Binaries

find_binaries() {
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    [[ "$target" = /* ]] || target="$ROOT/$target"
    if [[ -z "${AT_SERVER_BIN:-}" || -z "${AT_DIRECTORY_BIN:-}" ]]; then
        # Built whenever cargo is there (a no-op when up to date): binaries left in target/
        # from an older checkout would not understand the configs written here.
        if [[ "${LOCAL_CLUSTER_NO_BUILD:-}" != 1 ]] && command -v cargo >/dev/null; then
            log "building the release binaries (cargo build --release -p at-server -p at-directory)"
            (cd "$ROOT" && cargo build --release -p at-server -p at-directory)
        elif [[ ! -x "$target/release/at-server" || ! -x "$target/release/at-directory" ]]; then
            warn "no release binaries in $target/release and no cargo to build them"
            exit 1
        fi
    fi
    AT_SERVER_BIN="${AT_SERVER_BIN:-$target/release/at-server}"
    AT_DIRECTORY_BIN="${AT_DIRECTORY_BIN:-$target/release/at-directory}"
    REDIS_SERVER_BIN="${REDIS_SERVER_BIN:-redis-server}"
    local bin
    for bin in "$AT_SERVER_BIN" "$AT_DIRECTORY_BIN"; do
        if [[ ! -x "$bin" ]]; then
            warn "no executable $bin"
            exit 1
        fi
    done
    if ! command -v "$REDIS_SERVER_BIN" >/dev/null; then
        warn "$REDIS_SERVER_BIN not found (apt-get install redis-server)"
        exit 1
    fi
    if ! command -v curl >/dev/null; then
        warn "curl not found"
        exit 1
    fi
}

# ---------------------------------------------------------------------------------------------
# Configuration files

toml_string() {
    # A TOML basic string: escape backslashes and quotes.
    local s="${1//\\/\\\\}"
    printf '"%s"' "${s//\"/\\\"}"
}

write_configs() {
    local ca ca_key names
    ca="$(toml_string "$DIR/ca/ca.pem")"
    ca_key="$(toml_string "$DIR/ca/ca-key.pem")"
    names='["localhost", "127.0.0.1", "127.0.0.2", "127.0.0.3"]'

    cat >"$DIR/redis.conf" <<EOF
# Made by deploy/local-cluster.sh. Durable as the Helm chart's Redis: every acknowledged
# write is fsynced to the append-only file before Redis answers.
bind 127.0.0.1
port $REDIS_PORT
dir "$DIR/redis"
appendonly yes
appendfsync always
save ""
protected-mode yes
daemonize no
EOF

    cat >"$DIR/directory.toml" <<EOF
# Made by deploy/local-cluster.sh (rewritten on each 'up').
listen = "$(directory_addr)"
metrics_listen = "$(directory_metrics)"
data_dir = $(toml_string "$DIR/directory")

[tls]
# The directory's certificate is issued from the cluster CA at each start.
ca_file = $ca
ca_key_file = $ca_key
self_signed_names = ["localhost", "127.0.0.1"]

[store]
backend = "redis"
redis_url = "$(redis_url)"

[status]
ca_files = [$ca]
EOF

    local n sni_lines
    for n in "${NODES[@]}"; do
        if [[ -n "$SNI_DOMAIN" ]]; then
            sni_lines="sni_domain = \"$SNI_DOMAIN\"
# The directory hands out node 1's shared port (no load balancer in front of the nodes).
public_port = $(node_port 1)"
        else
            sni_lines="# No SNI routing: the directory hands out <public_host>:<the atSign's port>.
sni_domain = \"\""
        fi
        cat >"$DIR/node$n.toml" <<EOF
# Made by deploy/local-cluster.sh (rewritten on each 'up').
# Node $n of 3 on one Redis: every node serves every atSign. Provisioning works through any
# node: at-server --config $DIR/node$n.toml provision @alice
listen = "$(node_ip "$n"):$(node_port "$n")"
public_host = "$(node_ip "$n")"
$sni_lines
# Each provisioned atSign gets a port of this range, served by every node on its own address.
port_range_start = $ATSIGN_PORT
port_range_len = $ATSIGN_PORTS
metrics_listen = "$(node_metrics "$n")"
directory = "$(directory_addr)"
directory_ca_file = $ca
data_dir = $(toml_string "$DIR/node$n")
peer_ca_files = [$ca]
${LOCAL_CLUSTER_NODE_SETTINGS:-}

[tls]
# This node's certificate is issued from the cluster CA at each start.
ca_file = $ca
ca_key_file = $ca_key
self_signed_names = $names

[store]
backend = "redis"
redis_url = "$(redis_url)"

[directory_store]
# provision registers atSigns in the directory's store: the same Redis.
backend = "redis"
redis_url = "$(redis_url)"
EOF
    done
}

# ---------------------------------------------------------------------------------------------
# Starting and waiting

STARTED=()

# Stops what this run started, after a failure.
abort() {
    warn "$1"
    if ((${#STARTED[@]} > 0)); then
        warn "stopping what this run started: ${STARTED[*]}"
        # In the order of 'down': the nodes, the directory, then Redis.
        local group name
        local -a names
        for group in "node1 node2 node3" directory redis; do
            names=()
            for name in $group; do
                if [[ " ${STARTED[*]} " == *" $name "* ]]; then names+=("$name"); fi
            done
            if ((${#names[@]} > 0)); then stop_components "${names[@]}"; fi
        done
    fi
    exit 1
}

# Starts component $1 with the remaining words as its command, its output into its log.
spawn() {
    local name="$1"
    shift
    local logfile="$DIR/logs/$name.log"
    {
        echo
        echo "=== $(date '+%Y-%m-%d %H:%M:%S') starting: $*"
    } >>"$logfile"
    nohup "$@" </dev/null >>"$logfile" 2>&1 &
    echo $! >"$(pid_file "$name")"
    STARTED+=("$name")
}

# PING over bash's /dev/tcp (no redis-cli needed), in a subshell that owns the descriptor.
redis_ping() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" || exit 1
        printf 'PING\r\n' >&3
        reply=""
        IFS= read -r -t 2 reply <&3 || true
        [[ "$reply" == "+PONG"* ]]
    ) 2>/dev/null
}

http_ready() {
    curl -fsS --max-time 2 "http://$1/readyz" >/dev/null 2>&1
}

# Waits until `$2 $3` succeeds while component $1 runs, at most START_TIMEOUT seconds.
wait_ready() {
    local name="$1" check="$2" arg="${3:-}"
    local deadline=$((SECONDS + START_TIMEOUT))
    while true; do
        if [[ -z "$(running_pid "$name")" ]]; then
            tail -n 20 "$DIR/logs/$name.log" >&2 || true
            abort "$name exited during start-up (log: $DIR/logs/$name.log)"
        fi
        if "$check" "$arg" 2>/dev/null; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$DIR/logs/$name.log" >&2 || true
            abort "$name not ready within ${START_TIMEOUT}s (log: $DIR/logs/$name.log)"
        fi
        sleep 0.2
    done
}

cmd_up() {
    load_settings
    find_binaries
    mkdir -p "$DIR/run" "$DIR/logs" "$DIR/redis" "$DIR/directory"
    local n
    for n in "${NODES[@]}"; do mkdir -p "$DIR/node$n"; done
    save_settings
    write_configs

    if [[ ! -f "$DIR/ca/ca.pem" || ! -f "$DIR/ca/ca-key.pem" ]]; then
        log "making the cluster CA in $DIR/ca"
        "$AT_SERVER_BIN" ca-create --out "$DIR/ca" >/dev/null
    fi

    if [[ -n "$(running_pid redis)" ]]; then
        log "redis-server     already running (pid $(running_pid redis))"
    else
        spawn redis "$REDIS_SERVER_BIN" "$DIR/redis.conf"
        wait_ready redis redis_ping
        log "redis-server     $(redis_url)  (pid $(running_pid redis))"
    fi

    if [[ -n "$(running_pid directory)" ]]; then
        log "at-directory     already running (pid $(running_pid directory))"
    else
        spawn directory env NO_COLOR=1 AT_DIRECTORY_LOG="$LOG_FILTER" \
            "$AT_DIRECTORY_BIN" --config "$DIR/directory.toml" serve
        wait_ready directory http_ready "$(directory_metrics)"
        log "at-directory     $(directory_addr)  metrics $(directory_metrics)  (pid $(running_pid directory))"
    fi

    # The nodes start together and are waited for together.
    local pending=()
    for n in "${NODES[@]}"; do
        if [[ -n "$(running_pid "node$n")" ]]; then
            log "at-server node$n  already running (pid $(running_pid "node$n"))"
        else
            spawn "node$n" env NO_COLOR=1 AT_SERVER_LOG="$LOG_FILTER" \
                "$AT_SERVER_BIN" --config "$DIR/node$n.toml" serve
            pending+=("$n")
        fi
    done
    for n in "${pending[@]}"; do
        wait_ready "node$n" http_ready "$(node_metrics "$n")"
        log "at-server node$n  $(node_ip "$n"):$(node_port "$n")  metrics $(node_metrics "$n")  (pid $(running_pid "node$n"))"
    done

    local bin_hint="$AT_SERVER_BIN"
    cat <<EOF

Local cluster up in $DIR (logs in $DIR/logs; stop with: $0 down $DIR)

Provision an atSign (through any node; prints its address and CRAM secret):
  $bin_hint --config $DIR/node1.toml provision @alice
Clients trust the cluster CA, for the directory and every node:
  $DIR/ca/ca.pem         (Python SDK: SSL_CERT_FILE=$DIR/ca/ca.pem, root $(directory_addr))
Look it up in the directory:
  printf 'alice\\n' | openssl s_client -quiet -CAfile $DIR/ca/ca.pem -connect $(directory_addr)
Connect to it (the port 'provision' printed, e.g. $ATSIGN_PORT) on any node:
  openssl s_client -quiet -CAfile $DIR/ca/ca.pem -connect 127.0.0.1:$ATSIGN_PORT   # node 1
  openssl s_client -quiet -CAfile $DIR/ca/ca.pem -connect 127.0.0.2:$ATSIGN_PORT   # node 2
  openssl s_client -quiet -CAfile $DIR/ca/ca.pem -connect 127.0.0.3:$ATSIGN_PORT   # node 3
Its status (teapot until onboarded):
  curl -s http://$(directory_metrics)/api/status/@alice
EOF
    if [[ -n "$SNI_DOMAIN" ]]; then
        cat <<EOF
SNI: the directory hands out <uuid>.$SNI_DOMAIN:$(node_port 1); each node's shared port
  (127.0.0.N:$((BASE_PORT + 1))..$((BASE_PORT + 3))) answers those names too, e.g.
  openssl s_client -quiet -CAfile $DIR/ca/ca.pem -connect 127.0.0.2:$(node_port 2) -servername <uuid>.$SNI_DOMAIN
EOF
    fi
}

# ---------------------------------------------------------------------------------------------
# Stopping

# SIGTERM to each running component given, then waits for all (at most STOP_TIMEOUT each
# round), then SIGKILL for what is left.
stop_components() {
    local name pid
    local -a names=() pids=()
    for name in "$@"; do
        pid="$(running_pid "$name")"
        if [[ -n "$pid" ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            names+=("$name")
            pids+=("$pid")
        else
            rm -f "$(pid_file "$name")"
        fi
    done
    ((${#pids[@]} > 0)) || return 0
    local deadline=$((SECONDS + STOP_TIMEOUT)) i alive
    while true; do
        alive=0
        for i in "${!pids[@]}"; do
            if [[ -n "$(running_pid "${names[$i]}")" ]]; then
                alive=1
            fi
        done
        ((alive)) || break
        if ((SECONDS >= deadline)); then
            for i in "${!pids[@]}"; do
                if [[ -n "$(running_pid "${names[$i]}")" ]]; then
                    warn "${names[$i]} (pid ${pids[$i]}) still running after ${STOP_TIMEOUT}s: SIGKILL"
                    kill -KILL "${pids[$i]}" 2>/dev/null || true
                fi
            done
            sleep 0.2
            break
        fi
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        log "stopped ${names[$i]} (pid ${pids[$i]})"
        rm -f "$(pid_file "${names[$i]}")"
    done
}

cmd_down() {
    load_settings
    if [[ ! -d "$DIR/run" ]]; then
        log "nothing to stop in $DIR"
        return 0
    fi
    # Nodes first (they drain their connections and need Redis meanwhile), Redis last.
    stop_components node1 node2 node3
    stop_components directory
    stop_components redis
}

# ---------------------------------------------------------------------------------------------
# Status

cmd_status() {
    load_settings
    local name pid addr probe ready any=0
    printf '%-10s %-8s %-18s %-16s %s\n' COMPONENT PID ADDRESS METRICS READY
    for name in redis directory node1 node2 node3; do
        pid="$(running_pid "$name")"
        case "$name" in
            redis) addr="127.0.0.1:$REDIS_PORT"; probe="-" ;;
            directory) addr="$(directory_addr)"; probe="$(directory_metrics)" ;;
            node*)
                addr="$(node_ip "${name#node}"):$(node_port "${name#node}")"
                probe="$(node_metrics "${name#node}")"
                ;;
        esac
        if [[ -z "$pid" ]]; then
            ready="stopped"
        else
            any=1
            if [[ "$name" == redis ]]; then
                if redis_ping 2>/dev/null; then ready="yes"; else ready="no"; fi
            elif http_ready "$probe"; then
                ready="yes"
            else
                ready="no"
            fi
        fi
        printf '%-10s %-8s %-18s %-16s %s\n' "$name" "${pid:--}" "$addr" "$probe" "$ready"
    done
    ((any)) || log "(nothing running in $DIR)"
}

# ---------------------------------------------------------------------------------------------

main() {
    (($# >= 1 && $# <= 2)) || usage
    local command="$1"
    case "$command" in
        up | down | status) ;;
        *) usage ;;
    esac
    DIR="$(resolve_dir "$command" "${2:-}")"
    "cmd_$command"
}

main "$@"
