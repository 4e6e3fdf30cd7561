#!/bin/sh
# Run every test program; print one summary line; fail if any failed.
# Usage: run-tests.sh BUILD_DIR TEST_BIN...
set -u
build=$1
shift
passed=0
failed=0
failed_names=""
for t in "$@"; do
	name=$(basename "$t")
	if "$t"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failed_names="$failed_names $name"
	fi
done
echo
echo "test programs ($build): $passed passed, $failed failed"
[ $failed -eq 0 ] || { echo "failed:$failed_names"; exit 1; }
exit 0
