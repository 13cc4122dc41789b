//! `load` against real databases: PostgreSQL (`SLUICE_TEST_DATABASE_URL`, a fresh database
//! per test) and SQLite in a temporary folder. Each behaviour runs on both. (In the library,
//! not `tests/`, so one test binary links DataFusion.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Destination, LoadError, LoadJob, LoadReport, Mode, TableName, load_batches};
use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::Stream;
use sluice_store::testing::{TestDatabase, fresh_postgres_url};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, SqliteConnection};
use tokio_util::sync::CancellationToken;

enum Db {
    Postgres(TestDatabase),
    Sqlite(tempfile::TempDir),
}

impl Db {
    async fn postgres() -> Option<Db> {
        fresh_postgres_url().await.map(Db::Postgres)
    }

    fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    fn url(&self) -> String {
        match self {
            Db::Postgres(database) => database.url().to_owned(),
            Db::Sqlite(dir) => format!("sqlite://{}/warehouse.db", dir.path().display()),
        }
    }

    fn destination(&self) -> Destination {
        Destination::parse("warehouse", &self.url(), std::path::Path::new("/")).unwrap()
    }

    async fn execute(&self, statements: &str) {
        match self {
            Db::Postgres(database) => {
                let mut connection = PgConnection::connect(database.url()).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(statements.to_owned()))
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
            Db::Sqlite(_) => {
                let mut connection = self.sqlite_connection().await;
                sqlx::raw_sql(AssertSqlSafe(statements.to_owned()))
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
        }
    }

    async fn try_execute(&self, statement: &str) -> Result<(), String> {
        let result = match self {
            Db::Postgres(database) => {
                let mut connection = PgConnection::connect(database.url()).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(statement.to_owned()))
                    .execute(&mut connection)
                    .await
                    .map(drop)
            }
            Db::Sqlite(_) => {
                let mut connection = self.sqlite_connection().await;
                sqlx::raw_sql(AssertSqlSafe(statement.to_owned()))
                    .execute(&mut connection)
                    .await
                    .map(drop)
            }
        };
        result.map_err(|e| e.to_string())
    }

    async fn sqlite_connection(&self) -> SqliteConnection {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.url().trim_start_matches("sqlite://"))
            .create_if_missing(true);
        SqliteConnection::connect_with(&options).await.unwrap()
    }

    /// `(id, name)` of every row, by id.
    async fn people(&self, table: &str) -> Vec<(i64, Option<String>)> {
        let query = format!("SELECT id, name FROM {table} ORDER BY id");
        match self {
            Db::Postgres(database) => {
                let mut connection = PgConnection::connect(database.url()).await.unwrap();
                sqlx::query_as(AssertSqlSafe(query))
                    .fetch_all(&mut connection)
                    .await
                    .unwrap()
            }
            Db::Sqlite(_) => {
                let mut connection = self.sqlite_connection().await;
                sqlx::query_as(AssertSqlSafe(query))
                    .fetch_all(&mut connection)
                    .await
                    .unwrap()
            }
        }
    }

    async fn load(
        &self,
        table: &str,
        mode: Mode,
        batches: Vec<Result<RecordBatch, LoadError>>,
    ) -> Result<LoadReport, LoadError> {
        let schema = match batches.first() {
            Some(Ok(batch)) => batch.schema(),
            _ => people_schema(),
        };
        self.load_stream(
            table,
            mode,
            schema,
            futures::stream::iter(batches),
            &CancellationToken::new(),
        )
        .await
    }

    async fn load_stream(
        &self,
        table: &str,
        mode: Mode,
        schema: SchemaRef,
        batches: impl Stream<Item = Result<RecordBatch, LoadError>> + Send + Unpin,
        cancel: &CancellationToken,
    ) -> Result<LoadReport, LoadError> {
        let destination = self.destination();
        let table = TableName::parse(table).unwrap();
        let job = LoadJob {
            destination: &destination,
            table: &table,
            mode: &mode,
            file: "people.csv",
            cancel,
        };
        load_batches(&job, schema, batches).await
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn postgres() {
                if let Some(db) = super::Db::postgres().await {
                    super::$name(&db).await;
                }
            }

            #[tokio::test]
            async fn sqlite() {
                super::$name(&super::Db::sqlite()).await;
            }
        }
    )*};
}

on_both!(
    append_creates_the_table_then_appends,
    replace_leaves_exactly_the_file_rows_and_keeps_the_table_definition,
    upsert_creates_the_key_and_the_last_row_of_a_key_wins,
    upsert_without_a_unique_key_is_refused_and_loads_nothing,
    a_schema_mismatch_names_column_file_and_table_and_loads_nothing,
    a_failure_mid_file_leaves_the_table_as_it_was,
    a_rejected_row_mid_file_rolls_back_the_whole_load,
    a_cancelled_load_leaves_the_table_as_it_was,
    loads_csv_jsonl_and_parquet_files,
    a_file_row_the_table_rejects_mid_file_loads_nothing,
    a_missing_file_is_named_and_nothing_is_touched,
);

fn people_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn people(rows: &[(i64, Option<&str>)]) -> RecordBatch {
    let ids: Int64Array = rows.iter().map(|(id, _)| Some(*id)).collect();
    let names: StringArray = rows.iter().map(|(_, name)| *name).collect();
    RecordBatch::try_new(
        people_schema(),
        vec![Arc::new(ids) as ArrayRef, Arc::new(names)],
    )
    .unwrap()
}

fn owned(rows: &[(i64, Option<&str>)]) -> Vec<(i64, Option<String>)> {
    rows.iter()
        .map(|(id, name)| (*id, name.map(str::to_owned)))
        .collect()
}

async fn append_creates_the_table_then_appends(db: &Db) {
    let report = db
        .load(
            "people",
            Mode::Append,
            vec![Ok(people(&[(1, Some("ada")), (2, None)]))],
        )
        .await
        .unwrap();
    assert_eq!((report.rows, report.created), (2, true));
    let report = db
        .load(
            "people",
            Mode::Append,
            vec![
                Ok(people(&[(3, Some("tab\there"))])),
                Ok(people(&[(4, Some("back\\slash\nline"))])),
            ],
        )
        .await
        .unwrap();
    assert_eq!((report.rows, report.created), (2, false));
    assert_eq!(
        db.people("people").await,
        owned(&[
            (1, Some("ada")),
            (2, None),
            (3, Some("tab\there")),
            (4, Some("back\\slash\nline"))
        ])
    );
}

async fn replace_leaves_exactly_the_file_rows_and_keeps_the_table_definition(db: &Db) {
    db.execute(
        "CREATE TABLE people (id bigint PRIMARY KEY, name text, loaded text DEFAULT 'yes'); \
         INSERT INTO people (id, name) VALUES (1, 'old'), (2, 'old')",
    )
    .await;
    let report = db
        .load(
            "people",
            Mode::Replace,
            vec![Ok(people(&[(7, Some("new")), (8, Some("new"))]))],
        )
        .await
        .unwrap();
    assert_eq!((report.rows, report.created), (2, false));
    assert_eq!(
        db.people("people").await,
        owned(&[(7, Some("new")), (8, Some("new"))])
    );
    // the primary key and the default survived the swap
    let duplicate = db
        .try_execute("INSERT INTO people (id, name) VALUES (7, 'again')")
        .await;
    assert!(duplicate.is_err(), "{duplicate:?}");
    db.execute("INSERT INTO people (id) VALUES (9)").await;
    assert_eq!(
        db.people("people WHERE loaded = 'yes'").await,
        owned(&[(7, Some("new")), (8, Some("new")), (9, None)])
    );
    // and a second replace works on the swapped-in table
    db.load(
        "people",
        Mode::Replace,
        vec![Ok(people(&[(1, Some("again"))]))],
    )
    .await
    .unwrap();
    assert_eq!(db.people("people").await, owned(&[(1, Some("again"))]));
}

async fn upsert_creates_the_key_and_the_last_row_of_a_key_wins(db: &Db) {
    let upsert = || Mode::Upsert {
        key: vec!["id".to_owned()],
    };
    let report = db
        .load(
            "people",
            upsert(),
            vec![Ok(people(&[(1, Some("a")), (2, Some("b"))]))],
        )
        .await
        .unwrap();
    assert_eq!((report.rows, report.created), (2, true));
    let report = db
        .load(
            "people",
            upsert(),
            vec![
                Ok(people(&[(2, Some("B")), (3, Some("c"))])),
                Ok(people(&[(3, Some("C"))])),
            ],
        )
        .await
        .unwrap();
    assert_eq!((report.rows, report.created), (3, false));
    assert_eq!(
        db.people("people").await,
        owned(&[(1, Some("a")), (2, Some("B")), (3, Some("C"))])
    );
}

async fn upsert_without_a_unique_key_is_refused_and_loads_nothing(db: &Db) {
    db.execute("CREATE TABLE people (id bigint, name text); INSERT INTO people VALUES (1, 'old')")
        .await;
    let error = db
        .load(
            "people",
            Mode::Upsert {
                key: vec!["id".to_owned()],
            },
            vec![Ok(people(&[(1, Some("new"))]))],
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "`mode: upsert` needs a primary key or unique index on (id) in table `people`, and it has none: create one (CREATE UNIQUE INDEX ON people (id)) or let load create the table; nothing was loaded"
    );
    assert_eq!(db.people("people").await, owned(&[(1, Some("old"))]));
    // a unique index is enough
    db.execute("CREATE UNIQUE INDEX people_id ON people (id)")
        .await;
    db.load(
        "people",
        Mode::Upsert {
            key: vec!["id".to_owned()],
        },
        vec![Ok(people(&[(1, Some("new"))]))],
    )
    .await
    .unwrap();
    assert_eq!(db.people("people").await, owned(&[(1, Some("new"))]));
}

async fn a_schema_mismatch_names_column_file_and_table_and_loads_nothing(db: &Db) {
    db.execute("CREATE TABLE people (id bigint, name text); INSERT INTO people VALUES (1, 'old')")
        .await;
    let with_email = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![2])) as ArrayRef),
        ("email", Arc::new(StringArray::from(vec!["x@example.com"]))),
    ])
    .unwrap();
    let error = db
        .load("people", Mode::Append, vec![Ok(with_email)])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "schema mismatch: `people.csv` has column `email` that table `people` lacks; nothing was loaded"
    );
    let text_id = RecordBatch::try_from_iter(vec![(
        "id",
        Arc::new(StringArray::from(vec!["two"])) as ArrayRef,
    )])
    .unwrap();
    let error = db
        .load("people", Mode::Replace, vec![Ok(text_id)])
        .await
        .unwrap_err();
    let declared = match db {
        Db::Postgres(_) => "bigint",
        Db::Sqlite(_) => "bigint",
    };
    assert_eq!(
        error.to_string(),
        format!(
            "schema mismatch: column `id` of `people.csv` is text (Utf8), which cannot convert to column `id` of table `people` ({declared}); nothing was loaded"
        )
    );
    assert_eq!(db.people("people").await, owned(&[(1, Some("old"))]));
}

async fn a_failure_mid_file_leaves_the_table_as_it_was(db: &Db) {
    db.execute("CREATE TABLE people (id bigint PRIMARY KEY, name text); INSERT INTO people VALUES (1, 'old')")
        .await;
    for mode in [
        Mode::Append,
        Mode::Replace,
        Mode::Upsert {
            key: vec!["id".to_owned()],
        },
    ] {
        let many: Vec<(i64, Option<&str>)> = (10..5_000).map(|id| (id, Some("new"))).collect();
        // an upsert would change row 1; the others add a row
        let changed = if matches!(mode, Mode::Upsert { .. }) {
            1
        } else {
            6_000
        };
        let error = db
            .load(
                "people",
                mode.clone(),
                vec![
                    Ok(people(&many)),
                    Ok(people(&[(changed, Some("changed"))])),
                    Err(LoadError::Read {
                        file: "people.csv".to_owned(),
                        message: "row 5002: cannot parse `x` as Int64".to_owned(),
                    }),
                ],
            )
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "reading `people.csv`: row 5002: cannot parse `x` as Int64; nothing was loaded",
            "{mode}"
        );
        assert_eq!(
            db.people("people").await,
            owned(&[(1, Some("old"))]),
            "{mode}"
        );
    }
}

async fn a_rejected_row_mid_file_rolls_back_the_whole_load(db: &Db) {
    db.execute(
        "CREATE TABLE people (id bigint, name text NOT NULL); INSERT INTO people VALUES (1, 'old')",
    )
    .await;
    let error = db
        .load(
            "people",
            Mode::Append,
            vec![
                Ok(people(&[(2, Some("b")), (3, Some("c"))])),
                Ok(people(&[(4, None)])),
            ],
        )
        .await
        .unwrap_err();
    let expected = match db {
        Db::Postgres(_) => {
            "loading into table `people` on connection `warehouse`: null value in column \"name\" of relation \"people\" violates not-null constraint (COPY people, line 3: \"4\t\\N\"); nothing was loaded"
        }
        Db::Sqlite(_) => {
            "loading into table `people` on connection `warehouse`: error returned from database: (code: 1299) NOT NULL constraint failed: people.name (in rows 3–3 of `people.csv`); nothing was loaded"
        }
    };
    assert_eq!(error.to_string(), expected);
    assert_eq!(db.people("people").await, owned(&[(1, Some("old"))]));
}

async fn a_cancelled_load_leaves_the_table_as_it_was(db: &Db) {
    db.execute("CREATE TABLE people (id bigint, name text); INSERT INTO people VALUES (1, 'old')")
        .await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let batches = futures::stream::iter((0..3).map(move |index| {
        if index == 1 {
            trigger.cancel();
        }
        Ok(people(&[(10 + index, Some("new"))]))
    }));
    let error = db
        .load_stream("people", Mode::Replace, people_schema(), batches, &cancel)
        .await
        .unwrap_err();
    assert_eq!(error, LoadError::Cancelled);
    assert_eq!(db.people("people").await, owned(&[(1, Some("old"))]));
}

#[tokio::test]
async fn readers_see_the_old_rows_while_postgres_replaces_the_table() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    db.execute("CREATE TABLE people (id bigint, name text); INSERT INTO people VALUES (1, 'old'), (2, 'old')")
        .await;
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    sender
        .unbounded_send(Ok(people(&[(7, Some("new"))])))
        .unwrap();
    let url = match &db {
        Db::Postgres(database) => database.url().to_owned(),
        Db::Sqlite(_) => unreachable!(),
    };
    let load = {
        let destination = db.destination();
        tokio::spawn(async move {
            let table = TableName::parse("people").unwrap();
            let cancel = CancellationToken::new();
            let job = LoadJob {
                destination: &destination,
                table: &table,
                mode: &Mode::Replace,
                file: "people.csv",
                cancel: &cancel,
            };
            load_batches(&job, people_schema(), receiver).await
        })
    };
    // wait until the load is copying, then read: the old rows, without waiting on the load
    let mut reader = PgConnection::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let copying: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'sluice load' AND query LIKE 'COPY%')",
        )
        .fetch_one(&mut reader)
        .await
        .unwrap();
        if copying {
            break;
        }
        assert!(Instant::now() < deadline, "the load never started its COPY");
        tokio::task::yield_now().await;
    }
    let during: Vec<(i64, Option<String>)> = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::query_as("SELECT id, name FROM people ORDER BY id").fetch_all(&mut reader),
    )
    .await
    .expect("a reader must not wait for the load")
    .unwrap();
    assert_eq!(during, owned(&[(1, Some("old")), (2, Some("old"))]));
    drop(sender);
    let report = load.await.unwrap().unwrap();
    assert_eq!(report.rows, 1);
    assert_eq!(db.people("people").await, owned(&[(7, Some("new"))]));
}

#[tokio::test]
async fn loads_into_a_schema_qualified_postgres_table() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    db.execute("CREATE SCHEMA mart").await;
    db.load(
        "mart.people",
        Mode::Append,
        vec![Ok(people(&[(1, Some("a"))]))],
    )
    .await
    .unwrap();
    db.load(
        "mart.people",
        Mode::Replace,
        vec![Ok(people(&[(2, Some("b"))]))],
    )
    .await
    .unwrap();
    assert_eq!(db.people("mart.people").await, owned(&[(2, Some("b"))]));
}

#[tokio::test]
async fn a_refused_connection_names_it_and_never_shows_the_password() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let destination = Destination::parse(
        "warehouse",
        &format!("postgres://loader:s3cr%2Ft@127.0.0.1:{port}/dw"),
        std::path::Path::new("/"),
    )
    .unwrap();
    let table = TableName::parse("people").unwrap();
    let cancel = CancellationToken::new();
    let job = LoadJob {
        destination: &destination,
        table: &table,
        mode: &Mode::Append,
        file: "people.csv",
        cancel: &cancel,
    };
    let error = load_batches(
        &job,
        people_schema(),
        futures::stream::iter(vec![Ok(people(&[(1, None)]))]),
    )
    .await
    .unwrap_err()
    .to_string();
    let expected =
        format!("`connection: warehouse`: cannot connect to PostgreSQL at 127.0.0.1:{port}/dw: ");
    assert!(error.starts_with(&expected), "{error}");
    assert!(error.contains("refused"), "{error}");
    assert!(!error.contains("s3cr"), "{error}");
    assert!(!format!("{destination:?}").contains("s3cr"));
}

#[tokio::test]
async fn an_upsert_key_missing_from_the_file_is_named() {
    let db = Db::sqlite();
    let error = db
        .load(
            "people",
            Mode::Upsert {
                key: vec!["email".to_owned()],
            },
            vec![Ok(people(&[(1, None)]))],
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "`key` column `email` is not a column of `people.csv`"
    );
}

async fn load_file_into(
    db: &Db,
    path: &std::path::Path,
    mode: Mode,
) -> Result<LoadReport, LoadError> {
    let destination = db.destination();
    let table = TableName::parse("people").unwrap();
    let cancel = CancellationToken::new();
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let job = LoadJob {
        destination: &destination,
        table: &table,
        mode: &mode,
        file: &file,
        cancel: &cancel,
    };
    super::load_file(&job, path, None).await
}

async fn loads_csv_jsonl_and_parquet_files(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "id,name,amount\n1,ada,1.5\n2,bob,2\n").unwrap();
    let report = load_file_into(
        db,
        &csv,
        Mode::Upsert {
            key: vec!["id".to_owned()],
        },
    )
    .await
    .unwrap();
    assert_eq!((report.rows, report.created), (2, true));
    let jsonl = dir.path().join("people.jsonl");
    std::fs::write(
        &jsonl,
        "{\"id\": 2, \"name\": \"bo\"}\n{\"id\": 3, \"name\": \"cy\"}\n",
    )
    .unwrap();
    let report = load_file_into(
        db,
        &jsonl,
        Mode::Upsert {
            key: vec!["id".to_owned()],
        },
    )
    .await
    .unwrap();
    assert_eq!((report.rows, report.created), (2, false));
    let parquet = dir.path().join("people.parquet");
    crate::write_batches(
        people_schema(),
        vec![Ok(people(&[(4, Some("di")), (5, None)]))],
        &parquet,
        crate::FileFormat::Parquet,
    )
    .unwrap();
    let report = load_file_into(db, &parquet, Mode::Append).await.unwrap();
    assert_eq!(report.rows, 2);
    assert_eq!(
        db.people("people").await,
        owned(&[
            (1, Some("ada")),
            (2, Some("bo")),
            (3, Some("cy")),
            (4, Some("di")),
            (5, None)
        ])
    );
}

async fn a_file_row_the_table_rejects_mid_file_loads_nothing(db: &Db) {
    db.execute("CREATE TABLE people (id bigint CHECK (id > 0), name text); INSERT INTO people VALUES (1, 'old')")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    let mut text = String::from("id,name\n");
    for row in 1..=20_000 {
        let id = if row == 15_000 { -1 } else { 100 + row };
        text.push_str(&format!("{id},n{row}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let error = load_file_into(db, &csv, Mode::Append)
        .await
        .unwrap_err()
        .to_string();
    match db {
        Db::Postgres(_) => assert!(
            error.contains("violates check constraint")
                && error.contains("(COPY people, line 15000: "),
            "{error}"
        ),
        Db::Sqlite(_) => assert!(
            error.contains("CHECK constraint failed") && error.contains(" of `people.csv`)"),
            "{error}"
        ),
    }
    assert!(error.ends_with("; nothing was loaded"), "{error}");
    assert_eq!(db.people("people").await, owned(&[(1, Some("old"))]));
}

async fn a_missing_file_is_named_and_nothing_is_touched(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("people.csv");
    let error = load_file_into(db, &missing, Mode::Replace)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "`from`: file `people.csv` not found (looked for {})",
            missing.display()
        )
    );
}
