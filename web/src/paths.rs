//! The UI's URLs, built in one place so every link matches a route in `app`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sluice_store::UNMAPPED;

/// Everything but RFC 3986's unreserved characters, so an id can hold `:`, `+`, `/` or `#`
/// (run ids carry a timestamp) and still be one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// The login page; `next` is where to return afterwards.
pub(crate) fn login(next: Option<&str>) -> String {
    match next {
        Some(path) if path != "/" => format!("/login?next={}", segment(path)),
        _ => "/login".to_owned(),
    }
}

pub(crate) fn dag(dag_id: &str) -> String {
    format!("/dags/{}", segment(dag_id))
}

pub(crate) fn run(dag_id: &str, run_id: &str) -> String {
    format!("{}/runs/{}", dag(dag_id), segment(run_id))
}

/// The trigger form (GET) and its target (POST).
pub(crate) fn trigger(dag_id: &str) -> String {
    format!("{}/trigger", dag(dag_id))
}

/// The backfill form (GET) and its target (POST: plan, then create).
pub(crate) fn backfill(dag_id: &str) -> String {
    format!("{}/backfill", dag(dag_id))
}

/// POST: pause or unpause (the form says which).
pub(crate) fn pause(dag_id: &str) -> String {
    format!("{}/pause", dag(dag_id))
}

/// POST: cancel an unfinished run.
pub(crate) fn cancel_run(dag_id: &str, run_id: &str) -> String {
    format!("{}/cancel", run(dag_id, run_id))
}

/// POST: clear a run's tasks (all, or one with its downstream) to run them again.
pub(crate) fn clear_run(dag_id: &str, run_id: &str) -> String {
    format!("{}/clear", run(dag_id, run_id))
}

/// POST: mark a task of a run success or failed.
pub(crate) fn mark_task(dag_id: &str, run_id: &str, task_id: &str) -> String {
    format!("{}/tasks/{}/mark", run(dag_id, run_id), segment(task_id))
}

/// One task instance of a run with every attempt; a mapped instance adds `?map_index=N`.
pub(crate) fn task_instance(dag_id: &str, run_id: &str, task_id: &str, map_index: i32) -> String {
    let mut url = format!("{}/tasks/{}", run(dag_id, run_id), segment(task_id));
    if map_index != UNMAPPED {
        url.push_str(&format!("?map_index={map_index}"));
    }
    url
}

/// One try of one task instance; a mapped instance adds `?map_index=N`.
pub(crate) struct AttemptAddress<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub map_index: i32,
    pub try_number: u32,
}

pub(crate) fn attempt_log(address: &AttemptAddress<'_>) -> String {
    let mut url = format!(
        "{}/tasks/{}/attempts/{}/log",
        run(address.dag_id, address.run_id),
        segment(address.task_id),
        address.try_number
    );
    if address.map_index != UNMAPPED {
        url.push_str(&format!("?map_index={}", address.map_index));
    }
    url
}

/// The server-sent events of one attempt's log, after chunk `after`.
pub(crate) fn attempt_log_stream(address: &AttemptAddress<'_>, after: i64) -> String {
    let log = attempt_log(address);
    let (path, query) = log.split_once('?').unwrap_or((&log, ""));
    if query.is_empty() {
        format!("{path}/stream?after={after}")
    } else {
        format!("{path}/stream?{query}&after={after}")
    }
}

fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_with_timestamps_stay_one_segment() {
        assert_eq!(
            run("daily_sales", "manual__2026-11-25T07:52:10.123456+00:00"),
            "/dags/daily_sales/runs/manual__2026-11-25T07%3A52%3A10.123456%2B00%3A00"
        );
        assert_eq!(run("a", "x/y#z"), "/dags/a/runs/x%2Fy%23z");
    }

    #[test]
    fn mapped_attempts_carry_their_map_index() {
        let mut address = AttemptAddress {
            dag_id: "d",
            run_id: "r",
            task_id: "t",
            map_index: UNMAPPED,
            try_number: 2,
        };
        assert_eq!(
            attempt_log(&address),
            "/dags/d/runs/r/tasks/t/attempts/2/log"
        );
        assert_eq!(
            attempt_log_stream(&address, 7),
            "/dags/d/runs/r/tasks/t/attempts/2/log/stream?after=7"
        );
        address.map_index = 3;
        assert_eq!(
            attempt_log(&address),
            "/dags/d/runs/r/tasks/t/attempts/2/log?map_index=3"
        );
        assert_eq!(
            attempt_log_stream(&address, 0),
            "/dags/d/runs/r/tasks/t/attempts/2/log/stream?map_index=3&after=0"
        );
    }
}
