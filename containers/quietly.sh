#!/usr/bin/env bash
# quietly.sh LOG WHAT CMD...: run CMD with its output appended to LOG; when it fails, say so in one
# line that names the log, and show the log's last lines.  Keeps `make demo` to kabuild's own lines.
set -uo pipefail
log=$1 what=$2; shift 2
mkdir -p "$(dirname "$log")"
printf '\n==== %s: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
if ! "$@" >>"$log" 2>&1; then
  printf 'kabuild-setup: ERROR: %s failed; its output is in %s, ending with:\n' "$what" "$log" >&2
  tail -n 15 "$log" | sed 's/^/    /' >&2
  exit 1
fi
