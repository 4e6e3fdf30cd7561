#!/bin/sh
# The training workload of the benchmark programs' profile-guided build:
# the instrumented bench-sched in $1 on runs that are not the one it
# measures by default (other arrival rates, fleet sizes, policies and batch
# limits), so that the profile describes the scheduler at work rather than
# one benchmark. Run from the repository root (data/ resolves).
set -eu
b="$1/bench-sched"
"$b" --jobs 200000 --rate 4.5 --devices 48 >/dev/null
"$b" --jobs 100000 --rate 8 --devices 96 >/dev/null
"$b" --jobs 50000 --policy tpw --devices 32 >/dev/null
"$b" --jobs 50000 --policy fifo >/dev/null
"$b" --jobs 30000 --policy rr --max-batch 16 >/dev/null
"$b" --jobs 20000 --single-steps --devices 16 >/dev/null
