//! The end of a successful attempt in one statement.
//!
//! A success settles the task whatever its retry policy (`decide::after_success`), so nothing
//! has to be read before it is written: one data-modifying statement checks the lease, locks
//! the task instance, ends the attempt, settles the task instance, appends the last log lines,
//! stores the outputs and says whether a pending task waits on this one, committed on its own
//! (one round trip, one commit, instead of a transaction of about eight statements). The run is
//! then evaluated, in a transaction of its own under the run's lock, only when a pending task
//! waiting on this one may now be decided by its trigger rule (`downstream_may_be_decided`) or
//! when nothing of the run is left unsettled after the commit: of several attempts ending
//! together, the last to commit sees every other settled. A process that dies between the two
//! leaves the evaluation to the scheduler's tick, which evaluates every running run.
//!
//! Failures keep the transaction in `attempts::finish`: their retry decision needs the task's
//! policy, read under its lock.

use super::PgStore;
use super::runs;
use sluice_core::{TaskState, TriggerRule};

use crate::decide;
use crate::*;

/// Locks are taken in the order `cancel_run` takes them: the task instance (`held`, checked to
/// be running the lease's try, so a lease whose task was cancelled, marked or failed as a
/// zombie matches nothing), then the attempt (`ended`, which re-checks the lease under its
/// lock). `ended` waits for `held` through its one-time `EXISTS` filter, and `settled` for
/// `ended` through its sub-select, so the order does not depend on the plan. `waited_on` is
/// read in the statement's snapshot: a task leaves `pending` for good, so a task not seen
/// waiting cannot start waiting later.
const FINISH_SUCCESS: &str = "\
WITH lease AS ( \
    SELECT ti_id, try_number FROM task_attempts WHERE id = $1 AND lease_token = $2 AND state = 'running' \
), held AS ( \
    SELECT ti.id FROM task_instances ti JOIN lease ON ti.id = lease.ti_id AND ti.try_number = lease.try_number \
    WHERE ti.state = 'running' \
    FOR NO KEY UPDATE OF ti \
), ended AS ( \
    UPDATE task_attempts SET state = 'success', ended_at = $3, exit_code = $4, error = $5, \
        log_bytes = log_bytes + octet_length($6) \
    WHERE id = $1 AND lease_token = $2 AND state = 'running' AND EXISTS (SELECT 1 FROM held) \
    RETURNING id, ti_id, run_pk, log_bytes \
), settled AS ( \
    UPDATE task_instances SET state = $7, next_try_at = $8, ended_at = $9 \
    WHERE id = (SELECT ti_id FROM ended) \
    RETURNING run_pk, task_id \
), logged AS ( \
    INSERT INTO task_logs (attempt_id, seq, content, created_at) \
    SELECT ended.id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM task_logs WHERE attempt_id = $1), $6, $3 \
    FROM ended WHERE $6 <> '' \
), kept AS ( \
    INSERT INTO task_outputs (attempt_id, key, value) \
    SELECT ended.id, o.key, o.value FROM ended, UNNEST($10::text[], $11::jsonb[]) AS o(key, value) \
) \
SELECT s.run_pk, s.task_id, e.log_bytes, \
    EXISTS (SELECT 1 FROM task_instances d WHERE d.run_pk = s.run_pk AND d.state = 'pending' \
            AND d.upstream @> jsonb_build_array(s.task_id)) AS waited_on \
FROM settled s CROSS JOIN ended e";

/// Records a successful attempt's end (`finish.outcome` must be `Success`).
pub(super) async fn finish_success(
    store: &PgStore,
    finish: &FinishAttempt,
    log: &str,
) -> StoreResult<FinishResult> {
    let after = decide::after_success(finish.now);
    let found: Option<(i64, String, i64, bool)> = sqlx::query_as(FINISH_SUCCESS)
        .bind(finish.lease.attempt_id)
        .bind(&finish.lease.token)
        .bind(finish.now)
        .bind(finish.exit_code)
        .bind(&finish.error)
        .bind(log)
        .bind(after.task_state.as_str())
        .bind(after.next_try_at)
        .bind(after.ended_at)
        .bind(finish.outputs.keys().collect::<Vec<_>>())
        .bind(finish.outputs.values().collect::<Vec<_>>())
        .fetch_optional(&store.pool)
        .await?;
    let Some((run_pk, task_id, log_bytes, waited_on)) = found else {
        return Err(StoreError::LeaseLost {
            attempt_id: finish.lease.attempt_id,
        });
    };
    let cap = i64::try_from(store.options.log_cap_bytes).unwrap_or(i64::MAX);
    if !log.is_empty()
        && log_bytes > cap
        && let Err(error) = super::attempts::trim_log(store, finish.lease.attempt_id).await
    {
        // a committed end must not be recorded twice: the log stays over its cap
        tracing::warn!(attempt_id = finish.lease.attempt_id, %error, "trimming the attempt's log to its cap failed");
    }
    // the attempt's end is committed: a failure from here on must not make the worker record
    // it again (it would read as a lost lease); the scheduler's tick evaluates the run instead
    let waited_on = waited_on.then_some(task_id.as_str());
    let progress = match evaluate_after(store, run_pk, waited_on, finish).await {
        Ok(progress) => progress,
        Err(error) => {
            tracing::warn!(run_pk, %error, "evaluating the run after an attempt's end failed; the scheduler will");
            RunProgress::default()
        }
    };
    Ok(FinishResult {
        task_state: after.task_state,
        progress,
    })
}

/// Evaluates the run when a pending task waiting on the finished one (`waited_on`: its task
/// id) may now be decided, or when nothing of the run is left unsettled once the end is
/// committed.
async fn evaluate_after(
    store: &PgStore,
    run_pk: i64,
    waited_on: Option<&str>,
    finish: &FinishAttempt,
) -> StoreResult<RunProgress> {
    if let Some(task_id) = waited_on {
        // a pending task is left, so the run cannot have ended
        if !downstream_may_be_decided(store, run_pk, task_id).await? {
            return Ok(RunProgress::default());
        }
    } else {
        let unsettled: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM task_instances WHERE run_pk = $1 \
                            AND state IN ('pending', 'queued', 'running', 'up_for_retry', 'up_for_reschedule'))",
        )
        .bind(run_pk)
        .fetch_one(&store.pool)
        .await?;
        if unsettled {
            return Ok(RunProgress::default());
        }
    }
    runs::evaluate(store, run_pk, finish.now).await
}

/// Whether a pending task waiting on `task_id` may be decided now, by its trigger rule over
/// its upstream instances' states, counted per state by the database. A join after a fan-out
/// of 2,000 is then evaluated once, when its last upstream settles, instead of after each of
/// them: an evaluation locks the run and reads all its task instances, so 2,000 of them in a
/// row took ten seconds. Read after the commit, like the unsettled check: of two upstreams
/// ending together, the later to commit sees both settled.
async fn downstream_may_be_decided(
    store: &PgStore,
    run_pk: i64,
    task_id: &str,
) -> StoreResult<bool> {
    let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT d.id, d.trigger_rule, c.state, c.n \
         FROM task_instances d CROSS JOIN LATERAL ( \
             SELECT u.state, COUNT(*) AS n FROM jsonb_array_elements_text(d.upstream) AS up(task_id) \
             JOIN task_instances u ON u.run_pk = d.run_pk AND u.task_id = up.task_id \
             GROUP BY u.state) c \
         WHERE d.run_pk = $1 AND d.state = 'pending' AND d.upstream @> jsonb_build_array($2::text) \
         ORDER BY d.id",
    )
    .bind(run_pk)
    .bind(task_id)
    .fetch_all(&store.pool)
    .await?;
    let mut upstream: std::collections::BTreeMap<i64, (String, Vec<(TaskState, u32)>)> =
        std::collections::BTreeMap::new();
    for (id, rule, state, count) in rows {
        let Ok(state) = state.parse::<TaskState>() else {
            return Ok(true);
        };
        let entry = upstream.entry(id).or_insert_with(|| (rule, Vec::new()));
        entry
            .1
            .push((state, u32::try_from(count).unwrap_or(u32::MAX)));
    }
    // a waiting task whose upstream has no instance at all is left to the full evaluation too
    if upstream.is_empty() {
        return Ok(true);
    }
    // A pending upstream may be settled right now by an evaluation that read the run before
    // this end was committed, and a running one failed by a transaction that evaluated the run
    // in it (`attempts::finish` re-evaluates after its commit for that reason): counts read
    // here could miss either, so a pending upstream sends this end to the full evaluation,
    // which waits for the run's lock and reads what they committed.
    Ok(upstream.values().any(|(rule, states)| {
        states.iter().any(|(state, _)| *state == TaskState::Pending)
            || rule
                .parse::<TriggerRule>()
                .map_or(true, |rule| decide::may_decide(rule, states))
    }))
}
