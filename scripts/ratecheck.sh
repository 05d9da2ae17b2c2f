#!/usr/bin/env bash
# Measures how much of the Sumsub rate limit the workers use: starts the dev
# server (API, one worker, simulator at 10 requests/s) plus WORKERS-1 more
# worker processes, uploads a batch larger than the window can drain, and
# reads the simulator's counters over SECONDS seconds.
#   scripts/ratecheck.sh [WORKERS=1] [SECONDS=60]
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-1} seconds=${2:-60} rate=10
data=$(mktemp -d) pids=()
# A database, a Redis database and ports of its own: make run is left alone.
db=kycbatch_ratecheck
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db?sslmode=disable REDIS_URL=redis://127.0.0.1:6379/14
export HTTP_ADDR=127.0.0.1:18080 DEV_S3_ADDR=127.0.0.1:18070 SUMSUB_SIM_ADDR=127.0.0.1:18090
cleanup() {
  kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"
  redis-cli -n 14 flushdb >/dev/null
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}
trap cleanup EXIT
go build -o "$data/devserver" ./cmd/devserver
go build -o "$data/worker" ./cmd/worker
export DATA_DIR=$data SUMSUB_RATE_LIMIT=$rate
"$data/devserver" >"$data/dev.out" 2>"$data/dev.log" & pids+=($!)
for _ in $(seq 50); do grep -q 'API key' "$data/dev.out" 2>/dev/null && break; sleep 0.2; done
key=$(cat "$data/dev-api-key") url=http://$HTTP_ADDR sim=http://$SUMSUB_SIM_ADDR
for _ in $(seq 2 "$workers"); do
  SUMSUB_BASE_URL=$sim SUMSUB_APP_TOKEN=sbx:kycbatch-dev SUMSUB_SECRET_KEY=kycbatch-dev-secret \
    "$data/worker" 2>>"$data/workers.log" & pids+=($!)
done
n=$(( rate * (seconds + 20) ))
echo "externalId,shareToken" >"$data/batch.csv"
for i in $(seq "$n"); do
  ext=$(cat /proc/sys/kernel/random/uuid)
  curl -sf -o /dev/null -H "X-API-Key: $key" -d "{\"externalId\":\"$ext\",\"type\":\"INDIVIDUAL\"}" $url/entity
  echo "$ext,ratecheck-$i-$RANDOM$RANDOM" >>"$data/batch.csv"
done
curl -sf -o /dev/null -H "X-API-Key: $key" -H 'X-Provider: sumsub' -H "Idempotency-Key: $RANDOM$RANDOM" \
  -F file=@"$data/batch.csv" $url/entity/kyc/import/batch
sleep 5 # past the start: measure the steady state
curl -sf -X POST $sim/_sim/reset
sleep "$seconds"
stats=$(curl -sf $sim/_sim/stats)
python3 - "$stats" "$seconds" "$rate" "$workers" <<'PY'
import json, sys
s, secs, rate, workers = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rps = s["requests"] / secs
print(f"{workers} worker(s), limit {rate}/s, {secs:.0f} s: {s['requests']} requests = {rps:.2f}/s "
      f"({rps / rate:.1%} of the limit), {s['rejected429']} 429s, at most {s['maxRequestsInAnySecond']} in any second")
PY
