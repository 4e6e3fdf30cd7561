#!/bin/sh
# Load benchmark of the node agent: wrk posts jobs to POST /v1/jobs on
# loopback for a fixed time while the jobs run on the default sim fleet,
# then prints submissions/s and latency percentiles (bench/wrk-submit.lua).
#
#   sh bench/load.sh                     (build/hetsched, 10 s, 2 threads,
#                                         64 connections)
#   BUILD=/tmp/b DURATION=30s CONNS=128 sh bench/load.sh
#   JOURNAL_SYNC=interval sh bench/load.sh   (202 after the journal's
#                                         write, fdatasync every 10 ms;
#                                         default: always, 202 after it)
#
# A benchmark is a program that prints figures: it does not pass or fail
# on them (the target on a 2-core machine: >= 20k/s, p99 < 10 ms).
set -eu

BUILD=${BUILD:-build}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
FLEET=${FLEET:-data/fleets/default.json}
JOURNAL_SYNC=${JOURNAL_SYNC:-always}
HETSCHED=${HETSCHED:-$BUILD/hetsched}

cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
	echo "load.sh: installing wrk (Debian package)" >&2
	if [ "$(id -u)" -eq 0 ]; then
		SUDO=
	elif command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "load.sh: wrk is missing; install it (apt-get install wrk)" >&2
		exit 1
	fi
	$SUDO apt-get install -y wrk >/dev/null 2>&1 ||
		{ $SUDO apt-get update >/dev/null && $SUDO apt-get install -y wrk >/dev/null; }
fi
if [ ! -x "$HETSCHED" ]; then
	make BUILD="$BUILD" "$BUILD/hetsched" >/dev/null
fi

state=$(mktemp -d /tmp/hetsched-load.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
	rm -rf "$state"
}
trap cleanup EXIT INT TERM

# The queue may grow while wrk outpaces the fleet: measure acceptance,
# not back-pressure (429s would be counted as errors).
"$HETSCHED" serve --listen 127.0.0.1:0 --fleet "$FLEET" \
	--state-dir "$state" --max-queue 10000000 --keep-finished 1000 \
	--drain-timeout 5 --journal-sync "$JOURNAL_SYNC" \
	>"$state/out" 2>"$state/err" &
pid=$!
i=0
while ! grep -q "^listening on" "$state/out" 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
		echo "load.sh: the agent did not start:" >&2
		cat "$state/err" >&2
		exit 1
	fi
	sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$state/out")

echo "hetsched serve on $addr ($FLEET, sim devices in real time," \
	"journal-sync $JOURNAL_SYNC);" \
	"wrk -t$THREADS -c$CONNS -d$DURATION POST /v1/jobs"
# CPU time the hypervisor took from this VM while wrk ran (the "steal"
# column of /proc/stat): on a shared VM it, not the agent, sets the tail.
cpu_ticks() {
	# user nice system idle iowait irq softirq steal: guest time is
	# already in user and nice.
	awk '/^cpu / { t = 0; for (i = 2; i <= 9 && i <= NF; i++) t += $i;
		       print t, $9 }' /proc/stat 2>/dev/null || echo "0 0"
}
before=$(cpu_ticks)
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
	-s bench/wrk-submit.lua "http://$addr/v1/jobs"
after=$(cpu_ticks)
echo "$before $after" | awk '{ t = $3 - $1; s = $4 - $2;
	if (t > 0) printf "hypervisor steal during the run: %.1f %% of the CPU time\n", 100 * s / t }'

# What the agent saw (its journal, its jobs), then a clean drain.
if command -v curl >/dev/null 2>&1; then
	echo "------------------------------------------------------------"
	curl -s "http://$addr/v1/stats"
	echo
fi
kill -TERM "$pid"
wait "$pid" && status=0 || status=$?
pid=
echo "agent exit status: $status"
