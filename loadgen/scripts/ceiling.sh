#!/usr/bin/env bash
# Measures certgate-loadgen's own ceiling against the trivial TLS server (examples/trivial_server.rs)
# on this machine: server pinned to CPU 1, one load-generator thread pinned to CPU 0, 127.0.0.1 only,
# every run bounded in time. Prints, per mode, the achieved rate, both sides' CPU use and the
# load generator's CPU cost per request (its per-core ceiling = 1 / that cost).
#
#   bash loadgen/scripts/ceiling.sh            # DUR=10s CONNS=64 PORT=18443 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${DUR:-10s}
CONNS=${CONNS:-64}
PORT=${PORT:-18443}
MODES=${MODES:-keepalive post handshake resume}
cargo build --release -q -p certgate-loadgen --bin certgate-loadgen --example trivial_server
LG=target/release/certgate-loadgen
SRV=target/release/examples/trivial_server
WORK=$(mktemp -d)
"$SRV" --listen "127.0.0.1:$PORT" --threads 1 --pin-cpus 1 --mtls --seconds 600 --pki-dir "$WORK" >"$WORK/server.log" 2>&1 &
SRV_PID=$!
trap 'kill "$SRV_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 1
ticks() { awk '{print $14 + $15}' "/proc/$SRV_PID/stat"; }
HZ=$(getconf CLK_TCK)
printf '%-10s %12s %10s %10s %14s %16s\n' mode "req/s" "lg CPU" "srv CPU" "lg µs/req" "lg ceiling/core"
for mode in $MODES; do
  s0=$(ticks)
  /usr/bin/time -f "%U %S %e" -o "$WORK/time" \
    "$LG" "https://127.0.0.1:$PORT/" --ca "$WORK/ca.pem" --cert "$WORK/client.pem" --key "$WORK/client-key.pem" \
    -m "$mode" -t 1 --pin-cpus 0 -c "$CONNS" -d "$DUR" -q --json "$WORK/$mode.json" || true
  s1=$(ticks)
  python3 - "$WORK/$mode.json" "$WORK/time" "$((s1 - s0))" "$HZ" "$mode" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
u, s, wall = map(float, open(sys.argv[2]).read().split()[-3:])
srv = int(sys.argv[3]) / int(sys.argv[4])
cpu = u + s
ok = r["ok"]
per = cpu / ok * 1e6 if ok else float("nan")
print(f'{sys.argv[5]:<10} {r["throughput_rps"]:>12,.0f} {cpu / wall:>9.0%} {srv / wall:>9.0%} {per:>14.1f} {1e6 / per:>16,.0f}'
      + (f'   errors {r["errors"]}' if r["errors_total"] else ""))
PY
done
