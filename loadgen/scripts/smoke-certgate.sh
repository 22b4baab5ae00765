#!/usr/bin/env bash
# A few seconds of load from certgate-loadgen against the real certgate in its
# zero-configuration mode (dev PKI, echo backend): every mode the benchmarks
# use must run with zero errors. Run by `./dev.sh test` after the test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=${PROFILE:-debug}
bin=target/$profile
state=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
admin=$((port + 1))
CERTGATE_STATE_DIR="$state" CERTGATE_LISTEN=127.0.0.1:$port CERTGATE_ADMIN_LISTEN=127.0.0.1:$admin \
    CERTGATE_WORKERS=1 CERTGATE_LOG=warn "$bin/certgate" >"$state/out" 2>"$state/err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do
    grep -q '^curl ' "$state/out" 2>/dev/null && break
    sleep 0.1
done
grep -q '^curl ' "$state/out" || { echo "smoke: certgate did not start"; cat "$state/err"; exit 1; }
pki="$state/dev-pki"
fails=0
for mode in keepalive handshake resume post; do
    out=$("$bin/certgate-loadgen" -m "$mode" -c 8 -t 1 -d 2s -w 0s -b 64k \
        --cert "$pki/client.pem" --key "$pki/client-key.pem" --ca "$pki/ca.pem" \
        --expect-status 200 --no-progress --json - "https://localhost:$port/" 2>/dev/null)
    summary=$(python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["ok"], r["errors_total"], round(r["throughput_rps"]))' <<<"$out")
    read -r ok errors rps <<<"$summary"
    echo "smoke: $mode: $ok requests ok, $errors errors, $rps req/s"
    if [ "$ok" -eq 0 ] || [ "$errors" -ne 0 ]; then fails=$((fails + 1)); fi
done
passed=$((4 - fails))
echo "smoke: $passed passed, $fails failed"
[ "$fails" -eq 0 ]
