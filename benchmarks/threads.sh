#!/usr/bin/env bash
# Measure what --threads does to localizer latency (the basis of the default, docs/benchmarks.md):
#   benchmarks/threads.sh [THREADS...]        (default: 1 2; 0 = torch's choice, all cores)
# Runs `jzi bench --preset demo` (the demo model's architecture, random weights, synthetic map;
# torch on the CPU) once with the machine as it is and once with one extra busy-looping process
# per run, as on a robot whose other nodes keep a core busy. Prints the load average and the
# bench table of every run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
THREADS=("${@:-1 2}")
read -r -a THREADS <<< "${THREADS[*]}"
bench() {
    "$PY" -m jzi_ros.cli.main bench --preset demo --backend torch --device cpu --no-paper-way \
        --frames 30 --warmup 5 --threads "$1" | grep "^| torch"
}
for load in as-is busy; do
    busy=""
    if [ "$load" = busy ]; then
        "$PY" -c "while True: pass" &
        busy=$!
        trap 'kill $busy 2>/dev/null || true' EXIT
        sleep 1
    fi
    for t in "${THREADS[@]}"; do
        echo "load=$load threads=$t loadavg=$(cut -d' ' -f1 /proc/loadavg) $(bench "$t")"
    done
    if [ -n "$busy" ]; then kill "$busy"; fi
done
