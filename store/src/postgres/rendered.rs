//! Attempts' rendered fields on PostgreSQL.

use std::collections::BTreeMap;

use sqlx::{PgPool, Row};

use crate::rendered_records::{RenderedRecord, decode, encode};
use crate::{Lease, StoreError, StoreResult};

pub(crate) async fn record_rendered(
    pool: &PgPool,
    lease: &Lease,
    fields: &BTreeMap<String, String>,
) -> StoreResult<()> {
    // one statement: the lease is checked by the same row the insert reads
    let result = sqlx::query(
        "INSERT INTO attempt_rendered (attempt_id, run_pk, fields) \
         SELECT id, run_pk, $1 FROM task_attempts WHERE id = $2 AND lease_token = $3 AND state = 'running' \
         ON CONFLICT (attempt_id) DO UPDATE SET fields = excluded.fields",
    )
    .bind(encode(fields)?)
    .bind(lease.attempt_id)
    .bind(&lease.token)
    .execute(pool)
    .await?;
    if result.rows_affected() == 0 {
        return Err(StoreError::LeaseLost {
            attempt_id: lease.attempt_id,
        });
    }
    Ok(())
}

pub(crate) async fn rendered_fields(
    pool: &PgPool,
    run_pk: i64,
) -> StoreResult<Vec<RenderedRecord>> {
    let rows = sqlx::query(
        "SELECT attempt_id, fields FROM attempt_rendered WHERE run_pk = $1 ORDER BY attempt_id",
    )
    .bind(run_pk)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| decode(row.try_get("attempt_id")?, row.try_get("fields")?))
        .collect()
}
