#!/usr/bin/env bash
# The run command: services up, a fresh demo database, migrations, the coordinator
# and worker-api running, the demo marketplace published to the listings feed, and
# simulated volunteers reviewing it; prints progress and, once every sampled
# listing is decided, how the escalations compare with the hidden truth. Then the
# services stay up for a look around until Ctrl-C; with DEMO_SECS set, the whole
# demo stops by itself after that many seconds.
#
#   scripts/demo.sh                       # defaults below; Ctrl-C to stop
#   DEMO_SECS=120 scripts/demo.sh         # bounded: stops by itself
#   DEMO_LISTINGS=20000 DEMO_VOLUNTEERS=200 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_SECS="${DEMO_SECS:-}"
DEMO_LISTINGS="${DEMO_LISTINGS:-4000}"
DEMO_VOLUNTEERS="${DEMO_VOLUNTEERS:-60}"
DEMO_THINK_MS="${DEMO_THINK_MS:-300}"
DEMO_SEED="${DEMO_SEED:-42}"
DEMO_DB=spotcheck_demo
ADMIN_PASSWORD="${SPOTCHECK_ADMIN_PASSWORD:-demo-admin-password}"
API="http://127.0.0.1:${DEMO_PORT:-8080}"
LOGS=.demo

export DATABASE_URL="postgres://postgres@127.0.0.1:5432/${DEMO_DB}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/}"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export SPOTCHECK_REDIS_PREFIX=spotcheck_demo
export SPOTCHECK_HTTP_ADDR="127.0.0.1:${DEMO_PORT:-8080}"
export SPOTCHECK_LEASE_TTL_SECS="${SPOTCHECK_LEASE_TTL_SECS:-60}"
export SPOTCHECK_ADMIN_PASSWORD="$ADMIN_PASSWORD"
export RUST_LOG="${RUST_LOG:-info,sqlx=warn,lapin=warn,tower_http=warn}"
# The simulated volunteers all come from one address and never tire: the demo
# lifts the per-process rate limits (see the README's security section).
export SPOTCHECK_RATE_CLAIM_PER_MIN="${SPOTCHECK_RATE_CLAIM_PER_MIN:-100000}"
export SPOTCHECK_RATE_VOTE_PER_MIN="${SPOTCHECK_RATE_VOTE_PER_MIN:-100000}"
export SPOTCHECK_RATE_AUTH_PER_MIN="${SPOTCHECK_RATE_AUTH_PER_MIN:-100000}"
# They also answer in DEMO_THINK_MS, far faster than a person looking at a listing:
# the speed rule would rightly stop every one of them, so the demo turns it off.
export SPOTCHECK_FAST_VOTE_SECS="${SPOTCHECK_FAST_VOTE_SECS:-0}"
# Staff confirm the counterfeits at the end; the sellers get a short window
# (three days in production) so the demo shows the penalties issued.
export SPOTCHECK_REFUTATION_WINDOW_SECS="${SPOTCHECK_REFUTATION_WINDOW_SECS:-15}"

scripts/services.sh "$DEMO_DB"

echo "== building (release)"
cargo build --release --quiet --bin coordinator --bin worker-api --bin spotcheck-sim
BIN=target/release

echo "== fresh demo state"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS ${DEMO_DB} WITH (FORCE)" \
    -c "CREATE DATABASE ${DEMO_DB}"
redis-cli -h 127.0.0.1 --scan --pattern "{${SPOTCHECK_REDIS_PREFIX}}:*" | xargs -r redis-cli -h 127.0.0.1 del >/dev/null
for queue in spotcheck.ingest spotcheck.tasks spotcheck.votes spotcheck.enforcement.unrouted; do
    rabbitmqctl -q purge_queue "$queue" >/dev/null 2>&1 || true
done
"$BIN/worker-api" migrate
printf '%s\n' "$ADMIN_PASSWORD" | "$BIN/worker-api" create-user --username admin --role admin

mkdir -p "$LOGS"
PIDS=()
stop() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

"$BIN/coordinator" >"$LOGS/coordinator.log" 2>&1 &
PIDS+=($!)
"$BIN/worker-api" >"$LOGS/worker-api.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 120); do
    curl -fs "$API/readyz" >/dev/null 2>&1 && break
    sleep 0.5
done
curl -fs "$API/readyz" >/dev/null || { echo "worker-api did not become ready; see $LOGS/worker-api.log"; exit 1; }

echo "== risk-weighted sampling rules"
TOKEN=$(curl -fs "$API/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"${ADMIN_PASSWORD}\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
RULES=$(curl -fs -X PUT "$API/v1/staff/sampling-rules" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d @scripts/demo-sampling-rules.json)
echo "$RULES"
# Ingest is fast: wait until the coordinator samples with these rules (it re-reads
# them every SPOTCHECK_POLICY_REFRESH_MS) before the marketplace is published.
VERSION=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["version"])' "$RULES")
METRICS="http://${SPOTCHECK_METRICS_ADDR:-127.0.0.1:9091}/metrics"
for _ in $(seq 1 100); do
    IN_FORCE=$(curl -fs "$METRICS" 2>/dev/null | awk '/^spotcheck_sampling_policy_version/ {print int($2)}')
    [[ -n "$IN_FORCE" && "$IN_FORCE" -ge "$VERSION" ]] && break
    sleep 0.1
done

cat <<MSG
== running: coordinator and worker-api are up
   API:          $API   (staff sign in as admin / \$SPOTCHECK_ADMIN_PASSWORD)
   web app:      $API/app/   (the same account opens the staff console: queue, rules, dashboards, volunteers, users)
   API docs:     $API/docs/  (Swagger UI of $API/openapi.json)
   exports:      curl -H "authorization: Bearer \$TOKEN" "$API/v1/staff/exports/votes?format=jsonl"
   escalations:  curl -H "authorization: Bearer \$TOKEN" $API/v1/staff/escalations
   cases:        curl -H "authorization: Bearer \$TOKEN" $API/v1/staff/cases
   penalties:    the enforcement events wait in the queue spotcheck.enforcement.unrouted
   figures:      curl -H "authorization: Bearer \$TOKEN" $API/v1/staff/stats
   logs:         $LOGS/coordinator.log, $LOGS/worker-api.log
   stop:         Ctrl-C${DEMO_SECS:+ (or wait ${DEMO_SECS}s)}
MSG

"$BIN/spotcheck-sim" demo --seed "$DEMO_SEED" --count "$DEMO_LISTINGS" \
    --volunteers "$DEMO_VOLUNTEERS" --think-ms "$DEMO_THINK_MS" --duration-secs "${DEMO_SECS:-3600}" \
    --api "$API" --admin-user admin --report-every 10 --json-report "$LOGS/report.json" \
    --enforce-secs "${DEMO_ENFORCE_SECS:-60}" ${DEMO_WAIT_INGEST:+--wait-ingest}
echo "== report written to $LOGS/report.json"
if [[ -n "$DEMO_SECS" ]]; then
    exit 0
fi
echo "== the coordinator and worker-api keep running at $API for a look around; Ctrl-C stops them"
echo "   get a staff token: TOKEN=\$(curl -s $API/v1/auth/login -H 'content-type: application/json' -d '{\"username\":\"admin\",\"password\":\"...\"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
while true; do sleep 3600; done
