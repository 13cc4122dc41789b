//! `type: ingest` from a SQL query on a connection.

use serde_json::json;
use sqlx::Connection;

use crate::support::{Harness, read_jsonl, run, step};

#[tokio::test]
async fn a_query_on_a_sqlite_connection_becomes_records() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("shop.db");
    let url = format!("sqlite://{}?mode=rwc", db_path.display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE orders (id INTEGER, amount REAL, note TEXT, day TEXT);
         INSERT INTO orders VALUES (1, 2.5, 'first', '2024-05-06'), (2, 4.0, NULL, '2024-05-06'), (3, 1.0, 'old', '2024-05-05');",
    )
    .execute(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();

    let conn_url = format!("sqlite://{}", db_path.display());
    let harness = Harness::new(dir.path(), &[("SLUICE_CONN_SHOP", conn_url.as_str())]);
    let step = step(
        "type: ingest\nsource:\n  sql:\n    connection: shop\n    query: SELECT id, amount, note FROM orders WHERE day = '{{ ds }}' ORDER BY id\ndestination: out.jsonl\n",
    );
    let outputs = run(&harness, &step).await.unwrap();
    assert_eq!(
        read_jsonl(&dir.path().join("out.jsonl")),
        [
            json!({"id": 1, "amount": 2.5, "note": "first"}),
            json!({"id": 2, "amount": 4.0, "note": null}),
        ]
    );
    assert_eq!(outputs["rows"], json!(2));

    let bad = step_with_query("SELECT nope FROM orders");
    let error = run(&harness, &bad).await.unwrap_err();
    assert!(
        error.starts_with("running the query on connection `shop`: ")
            && error.contains("no such column: nope"),
        "{error}"
    );
}

fn step_with_query(query: &str) -> sluice_core::Step {
    step(&format!(
        "type: ingest\nsource:\n  sql:\n    connection: shop\n    query: {query}\ndestination: out.jsonl\n"
    ))
}

#[tokio::test]
async fn a_query_on_a_postgres_connection_becomes_records() {
    let Some(database) = sluice_store::testing::fresh_postgres_url().await else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(database.url()).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE orders (id bigint, amount float8, note text, placed timestamptz, tags jsonb, flag boolean, price numeric);
         INSERT INTO orders VALUES (1, 2.5, 'first', '2024-05-06T10:00:00Z', '[\"a\"]', true, 1.5), (2, 4, NULL, NULL, NULL, false, 2);",
    )
    .execute(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::new(dir.path(), &[("SLUICE_CONN_WAREHOUSE", database.url())]);
    let select = step(
        "type: ingest\nsource:\n  sql:\n    connection: warehouse\n    query: SELECT id, amount, note, placed, tags, flag FROM orders ORDER BY id\ndestination: out.jsonl\n",
    );
    run(&harness, &select).await.unwrap();
    assert_eq!(
        read_jsonl(&dir.path().join("out.jsonl")),
        [
            json!({"id": 1, "amount": 2.5, "note": "first", "placed": "2024-05-06T10:00:00+00:00", "tags": ["a"], "flag": true}),
            json!({"id": 2, "amount": 4.0, "note": null, "placed": null, "tags": null, "flag": false}),
        ]
    );

    let numeric = step(
        "type: ingest\nsource:\n  sql:\n    connection: warehouse\n    query: SELECT price FROM orders\ndestination: out.jsonl\n",
    );
    assert_eq!(
        run(&harness, &numeric).await.unwrap_err(),
        "column `price` has type NUMERIC, which ingest cannot read: cast it in the query (`price::text` or `price::float8`)"
    );
}

#[tokio::test]
async fn a_connection_password_never_shows_in_an_error_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::closed_port().await;
    let url = format!("postgres://loader:secret@127.0.0.1:{port}/warehouse");
    let mut harness = Harness::new(dir.path(), &[("SLUICE_CONN_X", url.as_str())]);
    let step = step(
        "type: ingest\nsource:\n  sql:\n    connection: x\n    query: SELECT 1\ndestination: out.jsonl\n",
    );
    let error = run(&harness, &step).await.unwrap_err();
    assert!(
        error.starts_with("connecting on connection `x`: "),
        "{error}"
    );
    assert!(!error.contains("secret"), "{error}");
    assert!(!harness.log().contains("secret"));

    let undefined = step_on("nowhere");
    assert_eq!(
        run(&harness, &undefined).await.unwrap_err(),
        "connection `nowhere` is not defined: set SLUICE_CONN_NOWHERE to its URL on the worker"
    );
}

fn step_on(connection: &str) -> sluice_core::Step {
    step(&format!(
        "type: ingest\nsource:\n  sql:\n    connection: {connection}\n    query: SELECT 1\ndestination: out.jsonl\n"
    ))
}
