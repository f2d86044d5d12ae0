#!/usr/bin/env bash
# Nightly backup of one tsadmin database: create, verify, prune. Logs to stderr (cron mails
# it, or redirect it), exits non-zero on any failure so monitoring can alert.
#
#   nightly-backup.sh DB BACKUP_DIR [KEEP_LAST] [KEEP_DAILY] [KEEP_WEEKLY]
#
# BACKUP_DIR is any store: a directory, file:///dir or s3://bucket/prefix (credentials
# and endpoint from the AWS environment: see README, "Backups to object storage").
# Environment: TSADMIN (the tsadmin command, default: tsadmin on PATH),
#              TSADMIN_DATA_DIR (the data directory, default ./tsdata),
#              FULL_BACKUP_WEEKDAY (1-7, Monday is 1: the day of the weekly full backup,
#              default 7; "never" takes a full backup only when none exists).
set -euo pipefail

db=${1:?usage: nightly-backup.sh DB BACKUP_DIR [KEEP_LAST] [KEEP_DAILY] [KEEP_WEEKLY]}
dir=${2:?usage: nightly-backup.sh DB BACKUP_DIR [KEEP_LAST] [KEEP_DAILY] [KEEP_WEEKLY]}
keep_last=${3:-7}
keep_daily=${4:-14}
keep_weekly=${5:-8}
tsadmin=${TSADMIN:-tsadmin}
if ! command -v "$tsadmin" >/dev/null; then  # cron's short PATH: try the checkout's environment
  tsadmin="$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin/tsadmin"
fi

log() { printf '%s nightly-backup %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$db" "$*" >&2; }
trap 'log "FAILED (exit $?) at line $LINENO"' ERR

case "$dir" in
  *://*) ;;  # a store URL (s3://bucket/prefix): nothing to create here
  *) mkdir -p "$dir" ;;
esac
# Incremental when a full backup of this database exists already; a full one every Sunday
# (FULL_BACKUP_WEEKDAY).
full_day=${FULL_BACKUP_WEEKDAY:-7}
kind=(--incremental)
if [ "$(date -u +%u)" = "$full_day" ] || ! "$tsadmin" --format json backup list "$dir" | grep -q "\"database\": \"$db\""; then
  kind=()
fi

created=$("$tsadmin" --quiet --format json backup create "$db" --to "$dir" "${kind[@]}")
archive=$(printf '%s' "$created" | python3 -c 'import json, sys; print(json.load(sys.stdin)["archive"])')
log "created $archive"

"$tsadmin" --quiet --format json backup verify "$archive" > /dev/null
log "verified $archive"

"$tsadmin" --quiet backup prune "$dir" --keep-last "$keep_last" --keep-daily "$keep_daily" \
  --keep-weekly "$keep_weekly" >&2
log "pruned $dir (keep last $keep_last, daily $keep_daily, weekly $keep_weekly)"
