#!/bin/sh
# Run the CLI paths under valgrind; any leak or memory error fails.
# Usage: valgrind.sh BUILD/hetsched
set -u
cli=$1
supp="$(dirname "$0")/valgrind.supp"
vg="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --suppressions=$supp"
status=0
check() {
	expect=$1
	shift
	$vg "$cli" "$@" >/dev/null 2>/tmp/hs-valgrind.$$
	rc=$?
	if [ $rc -eq 99 ] || { [ "$expect" = ok ] && [ $rc -ne 0 ]; }; then
		echo "valgrind: FAIL (rc $rc): hetsched $*"
		cat /tmp/hs-valgrind.$$
		status=1
	else
		echo "valgrind: ok: hetsched $*"
	fi
	rm -f /tmp/hs-valgrind.$$
}
check ok --version
check ok --help
check ok models
check ok models --json
check ok devices --json
check ok devices --topology tests/data/dgx-h100.xml
check ok devices --inventory data/inventories/h20-910b-node.json --json
check err devices --bogus
check err devices --inventory tests/cases/inventory-unknown-profile/input.json
check err models --catalog tests/cases/models-bad-type/input.json
check ok bench --max-jobs 300 --policy all --json
check ok bench --synthetic gamma --rate 20 --duration 10 --fleet data/inventories/h20-910b-node.json --out /tmp/hs-valgrind-report
check err bench --trace tests/cases/trace-azure-negative/input.csv
check err bench --model no-such-model
check ok serve --help
check ok plan --help
check err plan tests/cases/scenario-unknown-key/input.json
exit $status
