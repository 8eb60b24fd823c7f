#!/usr/bin/env bash
# Prints the Go packages (./dir) that `make check` should test: for every
# file that differs from main (committed or not, or untracked), the nearest
# directory at or above it that holds Go files, so a changed manifest
# selects ./deploy and a changed fixture its package's tests. Files at the
# repository root (Makefile, Dockerfile, CHANGELOG.md) select
# ./internal/release, which checks them. Prints ./... when nothing differs
# or git is unavailable.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$({ git diff --name-only main...HEAD; git diff --name-only HEAD; git ls-files --others --exclude-standard; } 2>/dev/null | sort -u) || true
declare -A pkgs=()
for f in $files; do
	case $f in tools/*) continue ;; esac
	d=$(dirname "$f")
	while [ "$d" != "." ] && ! compgen -G "$d/*.go" >/dev/null; do
		d=$(dirname "$d")
	done
	if [ "$d" = "." ]; then
		d=internal/release
	fi
	[ -d "$d" ] && pkgs["./$d"]=1
done
if [ ${#pkgs[@]} -eq 0 ]; then
	echo ./...
else
	printf '%s\n' "${!pkgs[@]}" | sort | tr '\n' ' '
fi
