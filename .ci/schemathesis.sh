#!/usr/bin/env bash
# Checks that the running service keeps the contract of its OpenAPI document: the gateway
# simulator and the service on free ports, an account on the simulator, then schemathesis with
# every check, a fixed seed and a bounded number of examples per operation.
#
#   .ci/schemathesis.sh [path/to/supervisor]
#
# Needs python3 (a virtualenv with schemathesis is made in target/schemathesis-venv, or
# SCHEMATHESIS may name an installed `st`). EXAMPLES (default 20) and SEED (default 20240601)
# tune the run. Exits non-zero when schemathesis finds anything.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/supervisor}"
EXAMPLES="${EXAMPLES:-20}"
SEED="${SEED:-20240601}"
VENV="${CARGO_TARGET_DIR:-target}/schemathesis-venv"

if [ -n "${SCHEMATHESIS:-}" ]; then
  ST="$SCHEMATHESIS"
else
  if [ ! -x "$VENV/bin/st" ]; then
    echo "== installing schemathesis into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4,<5"
  fi
  ST="$VENV/bin/st"
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

REST_PORT="$(free_port)"
WS_PORT="$(free_port)"
PORT="$(free_port)"
API_KEY="schemathesis-gateway-key-0001"
TOKEN="schemathesis-admin-token-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
BASE="http://127.0.0.1:$PORT"

"$BIN" sim --rest-port "$REST_PORT" --ws-port "$WS_PORT" --api-key "$API_KEY" --seed 7 \
  --ticks-per-s 5 >"$WORK/sim.log" 2>&1 &
PIDS+=($!)

APP_ENVIRONMENT=local \
RUST_LOG=warn \
SUPERVISOR__SERVER__PORT="$PORT" \
SUPERVISOR__SECURITY__ADMIN_TOKEN="$TOKEN" \
SUPERVISOR__SECURITY__ENCRYPTION_KEY="$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')" \
SUPERVISOR__DATABASE__URL="sqlite://$WORK/contract.db?mode=rwc" \
SUPERVISOR__CALENDAR__ALWAYS_OPEN=true \
  "$BIN" serve >"$WORK/service.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 1 120); do
  curl -fsS "$BASE/health" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "$BASE/health" >/dev/null || { echo "the service did not start:"; cat "$WORK/service.log"; exit 1; }

curl -fsS -X POST "$BASE/api/v1/accounts" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"name\":\"simulator\",\"broker\":\"sim\",\"rest_url\":\"http://127.0.0.1:$REST_PORT\",
       \"ws_url\":\"ws://127.0.0.1:$WS_PORT\",\"api_key\":\"$API_KEY\",\"is_primary\":true}" \
  >/dev/null

echo "== schemathesis: every check, seed $SEED, at most $EXAMPLES examples per operation"
status=0
"$ST" --config-file .ci/schemathesis.toml run "$BASE/api/openapi.json" \
  --url "$BASE" \
  --header "Authorization: Bearer $TOKEN" \
  --checks all \
  --seed "$SEED" \
  --max-examples "$EXAMPLES" \
  --generation-database none \
  --workers 1 \
  --request-timeout 30 \
  --no-color || status=$?
if [ "$status" -ne 0 ]; then
  echo "== the service's log"
  tail -n 50 "$WORK/service.log"
fi
exit "$status"
