//! The OpenAPI 3 document of `/api/v1`, written by hand: every route of `api::ROUTES` with
//! its parameters, body and answers; a test checks that the two list the same routes.

use axum::Json;
use serde_json::{Map, Value, json};

/// `GET /api/v1/openapi.json`.
pub(crate) async fn document() -> Json<Value> {
    Json(build())
}

pub(crate) fn build() -> Value {
    let mut paths = Map::new();
    for (method, path, operation) in operations() {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "sluice API",
            "version": "1",
            "description": "DAGs, runs, task instances, attempts and logs of a sluice orchestrator. \
                Authenticate with `Authorization: Bearer TOKEN` (`sluice tokens create NAME --role R`). \
                Lists answer `{items, next_cursor}`; pass `next_cursor` back as `cursor`."
        },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(),
        }
    })
}

fn operations() -> Vec<(&'static str, &'static str, Value)> {
    let dag_id = path_param("dag_id", "The DAG's id.");
    let run_id = path_param(
        "run_id",
        "The run's id, e.g. `scheduled__2026-01-01T02:00:00Z`.",
    );
    let list = [
        query_param("cursor", "The `next_cursor` of the previous page."),
        query_param("limit", "Items per page, 1 to 500 (default 50)."),
    ];
    let state = query_param(
        "state",
        "Only runs in this state (queued, running, success, failed, cancelled).",
    );
    vec![
        (
            "get",
            "/dags",
            op("List DAGs, by id.", &list, list_of("Dag")),
        ),
        (
            "get",
            "/dags/{dag_id}",
            op("One DAG.", std::slice::from_ref(&dag_id), one("Dag")),
        ),
        (
            "post",
            "/dags/{dag_id}/pause",
            with_body(
                op(
                    "Pause or unpause a DAG (operator).",
                    std::slice::from_ref(&dag_id),
                    one("Dag"),
                ),
                json!({ "type": "object", "properties": { "paused": { "type": "boolean", "default": true } } }),
            ),
        ),
        (
            "get",
            "/dags/{dag_id}/runs",
            op(
                "A DAG's runs, newest logical date first.",
                &[
                    dag_id.clone(),
                    list[0].clone(),
                    list[1].clone(),
                    state.clone(),
                ],
                list_of("Run"),
            ),
        ),
        (
            "post",
            "/dags/{dag_id}/runs",
            with_body(
                created(op(
                    "Trigger a manual run now (operator); params are checked against the DAG's.",
                    std::slice::from_ref(&dag_id),
                    one("Run"),
                )),
                json!({ "type": "object", "properties": { "params": { "type": "object", "additionalProperties": true } } }),
            ),
        ),
        (
            "get",
            "/dags/{dag_id}/runs/{run_id}",
            op("One run.", &[dag_id.clone(), run_id.clone()], one("Run")),
        ),
        (
            "post",
            "/dags/{dag_id}/runs/{run_id}/cancel",
            op(
                "Cancel an unfinished run (operator); 409 when it has finished.",
                &[dag_id.clone(), run_id.clone()],
                one("Run"),
            ),
        ),
        (
            "get",
            "/dags/{dag_id}/runs/{run_id}/tasks",
            op(
                "The run's task instances, in the DAG's order.",
                &[dag_id.clone(), run_id.clone()],
                list_of("TaskInstance"),
            ),
        ),
        (
            "get",
            "/dags/{dag_id}/runs/{run_id}/attempts",
            op(
                "Every attempt of the run's tasks: one per try.",
                &[dag_id.clone(), run_id.clone()],
                list_of("Attempt"),
            ),
        ),
        (
            "get",
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            op(
                "One task instance: every attempt (with its rendered fields) and its outputs.",
                &[
                    dag_id.clone(),
                    run_id.clone(),
                    path_param("task_id", "The task's id."),
                    query_param("map_index", "The map index of a mapped task instance."),
                ],
                one("TaskInstanceDetail"),
            ),
        ),
        (
            "get",
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/attempts/{try_number}/log",
            op(
                "One attempt's log chunks after `cursor`; poll with `next_cursor` to follow it.",
                &[
                    dag_id,
                    run_id,
                    path_param("task_id", "The task's id."),
                    path_param("try_number", "The try, from 1."),
                    query_param("map_index", "The map index of a mapped task instance."),
                    query_param("cursor", "The `next_cursor` of the previous answer."),
                ],
                one("Log"),
            ),
        ),
        (
            "post",
            "/dags/{dag_id}/runs/{run_id}/clear",
            with_body(
                op(
                    "Clear tasks of a run to run them again (operator): the given ones (with their downstream tasks when asked) or every task.",
                    &[
                        path_param("dag_id", "The DAG's id."),
                        path_param("run_id", "The run's id."),
                    ],
                    json!({ "type": "object", "properties": {
                        "cleared": { "type": "integer" }, "run": one("Run")
                    } }),
                ),
                json!({ "type": "object", "properties": {
                    "task_ids": { "type": "array", "items": { "type": "string" }, "description": "Empty: every task." },
                    "downstream": { "type": "boolean", "default": false }
                } }),
            ),
        ),
        (
            "get",
            "/dags/{dag_id}/runs/{run_id}/outputs",
            op(
                "What each task's successful attempt returned: `{\"outputs\": {task: {key: value}}}`.",
                &[
                    path_param("dag_id", "The DAG's id."),
                    path_param("run_id", "The run's id."),
                ],
                json!({ "type": "object", "properties": { "outputs": { "type": "object" } } }),
            ),
        ),
        (
            "post",
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark",
            with_body(
                op(
                    "Mark a task success or failed (operator): its running attempt is cancelled and the run decided again.",
                    &[
                        path_param("dag_id", "The DAG's id."),
                        path_param("run_id", "The run's id."),
                        path_param("task_id", "The task's id."),
                    ],
                    one("Run"),
                ),
                json!({ "type": "object", "required": ["state"], "properties": {
                    "state": { "type": "string", "enum": ["success", "failed"] },
                    "map_index": { "type": "integer", "description": "One instance of a mapped task; all when absent." }
                } }),
            ),
        ),
        (
            "post",
            "/dags/{dag_id}/backfills",
            created(with_body(
                op(
                    "Backfill a range of the DAG's schedule (operator), as `sluice backfill` does: with `dry_run` answer the plan and change nothing; else 201 with the created backfill, or 200 with the open backfill of the same range (`resumed`) or none (`nothing_to_do`). 400 for a bad date or regex, 404 for an unknown DAG, 409 when the DAG has another open backfill.",
                    &[path_param("dag_id", "The DAG's id.")],
                    one("BackfillStarted"),
                ),
                json!({ "type": "object", "required": ["start", "end"], "properties": {
                    "start": { "type": "string", "description": "YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (in the DAG's timezone) or RFC 3339; inclusive." },
                    "end": { "type": "string", "description": "As `start`; inclusive (a day runs up to the next midnight)." },
                    "max_active_runs": { "type": "integer", "minimum": 1, "description": "Default: the DAG's." },
                    "reverse": { "type": "boolean", "default": false, "description": "Newest logical date first." },
                    "rerun_failed": { "type": "boolean", "default": false, "description": "Clear and rerun failed and cancelled runs." },
                    "tasks": { "type": "string", "description": "A regex of task ids: only those rerun in existing runs." },
                    "downstream": { "type": "boolean", "default": false, "description": "With `tasks`: their downstream tasks too." },
                    "dry_run": { "type": "boolean", "default": false, "description": "Answer `{dry_run: true, plan}` and change nothing." }
                } }),
            )),
        ),
        (
            "get",
            "/backfills/{backfill_id}",
            op(
                "One backfill, its state and how many of its runs are in each state.",
                &[path_param("backfill_id", "The backfill's id.")],
                one("Backfill"),
            ),
        ),
        (
            "post",
            "/backfills/{backfill_id}/cancel",
            op(
                "Cancel an open backfill and its unfinished runs (operator); 409 when it has ended.",
                &[path_param("backfill_id", "The backfill's id.")],
                one("Backfill"),
            ),
        ),
        (
            "get",
            "/runs",
            op(
                "Runs of every DAG, newest logical date first.",
                &[
                    list[0].clone(),
                    list[1].clone(),
                    state,
                    query_param("dag_id", "Only this DAG's runs."),
                ],
                list_of("Run"),
            ),
        ),
        (
            "get",
            "/events",
            op("The audit log, newest first.", &list, list_of("Event")),
        ),
        (
            "get",
            "/openapi.json",
            public(op("This document.", &[], json!({ "type": "object" }))),
        ),
    ]
}

fn op(summary: &str, parameters: &[Value], answer: Value) -> Value {
    json!({
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": { "description": "OK", "content": { "application/json": { "schema": answer } } },
            "default": { "description": "An error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
        }
    })
}

fn created(mut operation: Value) -> Value {
    let ok = operation["responses"]["200"].take();
    if let Some(responses) = operation["responses"].as_object_mut() {
        responses.remove("200");
        responses.insert("201".to_owned(), ok);
    }
    operation
}

fn with_body(mut operation: Value, schema: Value) -> Value {
    operation["requestBody"] =
        json!({ "required": false, "content": { "application/json": { "schema": schema } } });
    operation
}

fn public(mut operation: Value) -> Value {
    operation["security"] = json!([]);
    operation
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}

fn query_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } })
}

fn one(schema: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{schema}") })
}

fn list_of(schema: &str) -> Value {
    json!({
        "type": "object",
        "properties": {
            "items": { "type": "array", "items": one(schema) },
            "next_cursor": { "type": "string", "nullable": true }
        }
    })
}

fn schemas() -> Value {
    let time = json!({ "type": "string", "format": "date-time" });
    let optional_time = json!({ "type": "string", "format": "date-time", "nullable": true });
    json!({
        "Error": {
            "type": "object",
            "properties": { "error": { "type": "object", "properties": {
                "code": { "type": "string", "enum": ["not_found", "bad_request", "unauthorized", "forbidden", "conflict", "internal"] },
                "message": { "type": "string" }
            } } }
        },
        "Dag": { "type": "object", "properties": {
            "dag_id": { "type": "string" }, "fileloc": { "type": "string" }, "hash": { "type": "string" },
            "is_paused": { "type": "boolean" }, "is_active": { "type": "boolean" },
            "schedule": { "type": "string", "nullable": true }, "timezone": { "type": "string" },
            "description": { "type": "string", "nullable": true },
            "tags": { "type": "array", "items": { "type": "string" } }, "updated_at": time
        } },
        "Run": { "type": "object", "properties": {
            "dag_id": { "type": "string" }, "run_id": { "type": "string" },
            "run_type": { "type": "string" }, "state": { "type": "string" },
            "logical_date": time,
            "data_interval": { "type": "object", "properties": { "start": time, "end": time } },
            "dag_hash": { "type": "string" }, "params": { "type": "object" },
            "triggered_by": { "type": "string" }, "queued_at": time,
            "started_at": optional_time, "ended_at": optional_time
        } },
        "TaskInstance": { "type": "object", "properties": {
            "id": { "type": "integer" }, "task_id": { "type": "string" }, "map_index": { "type": "integer" },
            "state": { "type": "string" }, "try_number": { "type": "integer" }, "max_tries": { "type": "integer" },
            "queue": { "type": "string" }, "next_try_at": optional_time,
            "started_at": optional_time, "ended_at": optional_time
        } },
        "Attempt": { "type": "object", "properties": {
            "id": { "type": "integer" }, "task_id": { "type": "string" }, "map_index": { "type": "integer" },
            "try_number": { "type": "integer" }, "state": { "type": "string" }, "worker_id": { "type": "string" },
            "started_at": time, "ended_at": optional_time,
            "exit_code": { "type": "integer", "nullable": true }, "error": { "type": "string", "nullable": true },
            "rendered": { "type": "object", "nullable": true, "additionalProperties": { "type": "string" },
                "description": "What the attempt's templates rendered to (`command`, `env.NAME`, `working_dir`, `sql`), secrets as `***`; recorded before its step ran, null when nothing was." }
        } },
        "TaskInstanceDetail": { "type": "object", "properties": {
            "task_instance": one("TaskInstance"),
            "attempts": { "type": "array", "items": one("Attempt") },
            "outputs": { "type": "object", "description": "What the task's successful attempt returned: key to value." }
        } },
        "Log": { "type": "object", "properties": {
            "attempt": one("Attempt"),
            "chunks": { "type": "array", "items": { "type": "object", "properties": {
                "seq": { "type": "integer" }, "content": { "type": "string" }, "created_at": time
            } } },
            "next_cursor": { "type": "string" }
        } },
        "Backfill": { "type": "object", "properties": {
            "backfill": { "type": "object", "properties": {
                "id": { "type": "integer" }, "dag_id": { "type": "string" },
                "range_start": time, "range_end": time,
                "max_active_runs": { "type": "integer" }, "reverse": { "type": "boolean" },
                "options": { "type": "object" },
                "state": { "type": "string", "enum": ["running", "success", "failed", "cancelled"] },
                "triggered_by": { "type": "string" }, "created_at": time, "ended_at": optional_time
            } },
            "progress": { "type": "object", "properties": {
                "total": { "type": "integer" }, "queued": { "type": "integer" }, "running": { "type": "integer" },
                "success": { "type": "integer" }, "failed": { "type": "integer" }, "cancelled": { "type": "integer" }
            } }
        } },
        "BackfillPlan": { "type": "object", "properties": {
            "dag_id": { "type": "string" }, "range_start": time, "range_end": time,
            "max_active_runs": { "type": "integer" }, "reverse": { "type": "boolean" },
            "runs": { "type": "array", "items": { "type": "object", "properties": {
                "interval": { "type": "object", "properties": { "start": time, "end": time } },
                "existing": { "nullable": true, "allOf": [one("Run")] },
                "action": { "type": "string", "enum": ["create", "rerun", "keep"] },
                "tasks": { "type": "array", "items": { "type": "string" }, "description": "With `rerun`: the tasks that run again." },
                "reason": { "type": "string", "description": "With `keep`: why." }
            } } },
            "not_yet_due": { "type": "integer", "description": "Schedule points in the range whose interval has not ended: not backfilled." }
        } },
        "BackfillStarted": { "type": "object", "properties": {
            "dry_run": { "type": "boolean" },
            "outcome": { "type": "string", "enum": ["created", "resumed", "nothing_to_do"] },
            "plan": one("BackfillPlan"),
            "backfill": { "nullable": true, "allOf": [one("Backfill")] }
        } },
        "Event": { "type": "object", "properties": {
            "id": { "type": "integer" }, "at": time, "actor": { "type": "string" },
            "action": { "type": "string" }, "target": { "type": "string" }, "details": { "type": "object" }
        } }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::ROUTES;

    #[test]
    fn the_document_lists_exactly_the_api_routes() {
        let document = build();
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .as_object()
                    .expect("methods")
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        assert_eq!(documented, routed);
        assert_eq!(document["openapi"], "3.0.3");
    }

    #[test]
    fn every_reference_names_a_schema() {
        let text = build().to_string();
        let schemas = build()["components"]["schemas"].clone();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.get(&name).is_some(), "no schema `{name}`");
        }
    }
}
