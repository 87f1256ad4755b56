#!/usr/bin/env bash
# Samples pg_stat_activity twice a second and prints what non-idle backends of a
# database were waiting on: the profile behind a benchmark's figures.
#   scripts/pg-waits.sh DATABASE [SECONDS]   (default 10 s; DATABASE_URL names the server)
set -euo pipefail
db="${1:?usage: scripts/pg-waits.sh DATABASE [SECONDS]}"
secs="${2:-10}"
url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
samples=$((secs * 2))
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for _ in $(seq "$samples"); do
    psql "$url" -Atq -c "SELECT CASE WHEN state = 'idle in transaction' THEN 'idle in transaction'
                                     WHEN wait_event IS NULL THEN 'on CPU'
                                     ELSE wait_event_type || ':' || wait_event END
                         FROM pg_stat_activity
                         WHERE datname = '$db' AND state <> 'idle' AND pid <> pg_backend_pid()" >> "$out"
    sleep 0.5
done
total=$(wc -l < "$out")
echo "pg_stat_activity of $db: $total non-idle samples over ${secs}s"
sort "$out" | uniq -c | sort -rn
