#!/bin/bash
# Counts the SQL statements per task attempt of a 2,000-task `noop` fan-out (or, with
# SHAPE=join, the same fan-out into one join task) run by a `sluice scheduler` and four
# `sluice worker --slots 8` processes on PostgreSQL, as BENCHMARKS.md reports them.
#
#   benches/cluster_statements.sh target/release/sluice
#
# Needs: psql, a server at $ADMIN_URL that lets this script create a role and databases, and
# read access to its log ($PG_LOG). Statements are logged only for the role `sluice_count`
# (`ALTER ROLE … SET log_statement = 'all'`), which the script creates and drops.
set -eu
BIN=$(realpath "$1")
N=${N:-2000}
SHAPE=${SHAPE:-fanout}
ADMIN_URL=${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_LOG=${PG_LOG:-/var/log/postgresql/postgresql-15-main.log}
DB=sluice_statements_$$
DIR=$(mktemp -d)
ROLE_URL=$(echo "$ADMIN_URL" | sed -E 's#//[^@/]*@#//sluice_count@#')
URL=$(echo "$ROLE_URL" | sed -E "s#/[^/]*\$#/$DB#")
PIDS=""
cleanup() {
    [ -n "$PIDS" ] && kill $PIDS 2>/dev/null && wait 2>/dev/null
    psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "DROP ROLE IF EXISTS sluice_count"
    rm -rf "$DIR"
}
trap cleanup EXIT
psql -q "$ADMIN_URL" -c "CREATE ROLE sluice_count LOGIN SUPERUSER" -c "ALTER ROLE sluice_count SET log_statement = 'all'" \
    -c "CREATE DATABASE $DB OWNER sluice_count"
mkdir -p "$DIR/dags"
{
    printf 'dag: wide\nschedule: null\nmax_active_runs: 1\ntasks:\n'
    for i in $(seq -f %04g 0 $((N - 1))); do printf '  t%s:\n    type: noop\n' "$i"; done
    if [ "$SHAPE" = join ]; then
        printf '  join:\n    type: noop\n    depends_on: [%s]\n' "$(seq -f 't%04g' -s, 0 $((N - 1)))"
    fi
} > "$DIR/dags/wide.yaml"
export SLUICE_DATABASE_URL=$URL SLUICE_DAGS_FOLDER=$DIR/dags
cd "$DIR"
"$BIN" db migrate > /dev/null
"$BIN" scheduler 2> scheduler.log & PIDS="$!"
for i in 0 1 2 3; do "$BIN" worker --slots 8 2> "worker-$i.log" & PIDS="$PIDS $!"; done
until [ "$(psql -tAq "$URL" -c 'SELECT count(*) FROM dags' 2> /dev/null)" = 1 ]; do sleep 0.2; done
sleep 1
START=$(stat -c %s "$PG_LOG")
T0=$(date +%s.%N)
"$BIN" dags trigger wide > /dev/null
# the admin role polls, so its statements are not counted
ADMIN_DB_URL=$(echo "$ADMIN_URL" | sed -E "s#/[^/]*\$#/$DB#")
until [ "$(psql -tAq "$ADMIN_DB_URL" -c 'SELECT state FROM dag_runs')" = success ]; do sleep 0.05; done
T1=$(date +%s.%N)
sleep 0.5
END=$(stat -c %s "$PG_LOG")
ATTEMPTS=$(psql -tAq "$ADMIN_DB_URL" -c 'SELECT count(*) FROM task_attempts')
# backends write to the log concurrently, so lines can run together: count matches, not lines
tail -c +$((START + 1)) "$PG_LOG" | head -c $((END - START)) \
    | grep -o "sluice_count@$DB LOG:  \(execute [^:]*\|statement\): .\{0,70\}" \
    | sed 's/^[^:]*LOG:  //; s/execute [^:]*:/execute:/' | sort | uniq -c | sort -rn > kinds.txt
TOTAL=$(awk '{ s += $1 } END { print s }' kinds.txt)
echo "$SHAPE of $N noop tasks: $ATTEMPTS attempts in $(echo "$T1 - $T0" | bc) s (trigger → success, including the CLI's start)"
echo "statements: $TOTAL, per attempt: $(echo "scale=2; $TOTAL / $ATTEMPTS" | bc)"
head -12 kinds.txt
