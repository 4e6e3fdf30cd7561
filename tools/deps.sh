#!/bin/sh
# Install the Debian packages hetsched needs, when they are missing.
# Usage: deps.sh REQUIRED... [-- OPTIONAL...]
# Root runs apt-get directly, anyone else through sudo. Nothing is fetched
# from anywhere but the Debian archive.
set -u

required=""
optional=""
seen_sep=0
for p in "$@"; do
	if [ "$p" = "--" ]; then seen_sep=1; continue; fi
	if [ $seen_sep -eq 0 ]; then required="$required $p"; else optional="$optional $p"; fi
done

missing() {
	out=""
	for p in "$@"; do
		st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
		case "$st" in
		*"install ok installed"*) ;;
		*) out="$out $p" ;;
		esac
	done
	echo $out
}

need=$(missing $required)
want=$(missing $optional)
[ -z "$need$want" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	[ -z "$need" ] && exit 0
	echo "deps: missing packages ($need) and no apt-get: install them by hand" >&2
	exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "deps: missing packages ($need $want); run as root or install sudo" >&2
	[ -z "$need" ] && exit 0
	exit 1
fi

echo "deps: installing$need $want"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "deps: apt-get update failed" >&2; exit 1; }
if [ -n "$need" ]; then
	$SUDO apt-get install -y -qq $need >/dev/null || {
		echo "deps: apt-get install failed for:$need" >&2
		exit 1
	}
fi
if [ -n "$want" ]; then
	$SUDO apt-get install -y -qq --no-install-recommends $want >/dev/null ||
		echo "deps: optional packages not installed:$want" >&2
fi
exit 0
