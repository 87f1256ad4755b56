#!/usr/bin/env bash
# Makes sure PostgreSQL, Redis and RabbitMQ answer on loopback, starting (and on a
# fresh Debian machine installing) whichever does not, then creates the database.
#
#   scripts/services.sh [DATABASE]      # DATABASE defaults to "spotcheck"
#
# Meant for a developer machine or a CI runner without systemd, run as root.
# Idempotent: when everything is up it only checks, in well under a second.
set -euo pipefail

DB_NAME="${1:-spotcheck}"
HOST=127.0.0.1
WAIT_SECS=60

APT_UPDATED=0
STATUS=0

say() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [[ ! "$DB_NAME" =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]]; then
    die "database name '$DB_NAME' must be letters, digits and '_' (not starting with a digit)"
fi

need_root() {
    [[ "$(id -u)" -eq 0 ]] || die "$1 needs root; run this script as root (or with sudo)"
}

# Installs the Debian packages named, running `apt-get update` once per run.
apt_install() {
    need_root "installing $*"
    command -v apt-get >/dev/null || die "$* missing and apt-get not found; install them by hand"
    export DEBIAN_FRONTEND=noninteractive
    if [[ "$APT_UPDATED" -eq 0 ]]; then
        apt-get update -q
        APT_UPDATED=1
    fi
    apt-get install -y -q "$@"
}

# Polls the check function $2 every 0.5 s until it succeeds or WAIT_SECS pass.
wait_for() {
    local name="$1" check="$2" tries=$((WAIT_SECS * 2)) i
    for ((i = 0; i < tries; i++)); do
        if "$check"; then
            return 0
        fi
        sleep 0.5
    done
    die "$name did not answer on $HOST within ${WAIT_SECS}s (see its log)"
}

# --- the checks: quick, with a bound on how long each may hang --------------------

pg_up() { pg_isready -q -h "$HOST" -t 1 >/dev/null 2>&1; }
redis_up() { [[ "$(timeout 2 redis-cli -h "$HOST" -p 6379 ping 2>/dev/null)" == "PONG" ]]; }
rabbit_up() { timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/5672" 2>/dev/null; }

# --- PostgreSQL -------------------------------------------------------------------

ensure_postgres() {
    if ! command -v pg_ctlcluster >/dev/null || ! command -v psql >/dev/null; then
        apt_install postgresql
    fi
    if pg_up; then
        say "postgres: running"
        return
    fi
    need_root "starting PostgreSQL"
    local version
    version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -z "$version" ]]; then
        version="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
        [[ -n "$version" ]] || die "PostgreSQL is installed but no server version was found"
        pg_createcluster "$version" main
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for postgres pg_up
    say "postgres: started ($version/main)"
}

ensure_database() {
    local out
    if ! out="$(psql -h "$HOST" -U postgres -d postgres -w -Atc \
        "select 1 from pg_database where datname = '$DB_NAME'" 2>&1)"; then
        if grep -qiE 'authentication|password' <<<"$out"; then
            cat >&2 <<EOF
error: PostgreSQL refused user "postgres" on $HOST: $out
hint: the project expects trust authentication on loopback. As root, put these two
      lines above the other "host" lines of /etc/postgresql/*/main/pg_hba.conf:
          host all all 127.0.0.1/32 trust
          host all all ::1/128      trust
      then reload: pg_ctlcluster --skip-systemctl-redirect <version> main reload
      (or export PGPASSWORD for the postgres user and run this script again).
EOF
            exit 1
        fi
        die "could not query PostgreSQL: $out"
    fi
    if [[ "$out" == 1 ]]; then
        say "database $DB_NAME: exists"
    else
        createdb -h "$HOST" -U postgres -w "$DB_NAME"
        say "database $DB_NAME: created"
    fi
}

# --- Redis ------------------------------------------------------------------------

ensure_redis() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server
    fi
    if redis_up; then
        say "redis: running"
        return
    fi
    need_root "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for redis redis_up
    say "redis: started"
}

# --- RabbitMQ ---------------------------------------------------------------------

ensure_rabbitmq() {
    if ! command -v rabbitmq-server >/dev/null; then
        apt_install rabbitmq-server
    fi
    if rabbit_up; then
        say "rabbitmq: running"
        return
    fi
    need_root "starting RabbitMQ"
    rabbitmq-server -detached
    wait_for rabbitmq rabbit_up
    say "rabbitmq: started"
}

# --- Rust -------------------------------------------------------------------------

check_rust() {
    if command -v cargo >/dev/null; then
        say "rust: $(cargo --version)"
    elif [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        say "rust: installed in ~/.cargo/bin, which is not on PATH; run: . \"\$HOME/.cargo/env\""
        STATUS=1
    else
        say "rust: missing; install it with rustup (https://rustup.rs), e.g." \
            "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
        STATUS=1
    fi
}

ensure_postgres
ensure_database
ensure_redis
ensure_rabbitmq
check_rust
exit "$STATUS"
