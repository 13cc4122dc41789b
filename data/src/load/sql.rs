//! The SQL a load runs; where PostgreSQL and SQLite differ, both versions sit side by side.

use super::TableName;
use super::schema::{FileColumn, sql_type};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

/// The column PostgreSQL's upsert staging table numbers rows with, so the last row of a
/// repeated key wins.
pub(crate) const ROW_NUMBER_COLUMN: &str = "__sluice_row";

/// `"name"`, with any `"` doubled: every identifier a load writes is quoted.
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

impl TableName {
    /// `"schema"."table"` or `"table"`.
    pub(crate) fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(&self.name)),
            None => quote(&self.name),
        }
    }

    /// The table a PostgreSQL `replace` fills before the swap, in the same schema; its name
    /// fits PostgreSQL's 63 bytes.
    pub(crate) fn staging(&self) -> TableName {
        const SUFFIX: &str = "__sluice_new";
        let mut end = self.name.len().min(63 - SUFFIX.len());
        while !self.name.is_char_boundary(end) {
            end -= 1;
        }
        TableName {
            schema: self.schema.clone(),
            name: format!("{}{SUFFIX}", &self.name[..end]),
        }
    }
}

pub(crate) fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|column| quote(column))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE TABLE` from the file's columns; `primary_key` (an upsert's key) becomes the
/// table's primary key so `ON CONFLICT` has its unique index.
pub(crate) fn create_table(
    dialect: Dialect,
    table: &TableName,
    columns: &[FileColumn],
    primary_key: &[String],
) -> String {
    let mut definitions: Vec<String> = columns
        .iter()
        .map(|column| format!("{} {}", quote(&column.name), sql_type(dialect, column)))
        .collect();
    if !primary_key.is_empty() {
        definitions.push(format!("PRIMARY KEY ({})", column_list(primary_key)));
    }
    format!(
        "CREATE TABLE {} ({})",
        table.quoted(),
        definitions.join(", ")
    )
}

/// PostgreSQL: the `COPY` that streams the encoded rows.
pub(crate) fn copy_in(table: &str, columns: &[String]) -> String {
    format!("COPY {table} ({}) FROM STDIN", column_list(columns))
}

/// PostgreSQL `replace`: the staging table, a copy of the table's definition (columns,
/// defaults, constraints, indexes), then the swap at the end of the transaction.
pub(crate) fn create_staging_like(table: &TableName) -> String {
    format!(
        "CREATE TABLE {} (LIKE {} INCLUDING ALL)",
        table.staging().quoted(),
        table.quoted()
    )
}

pub(crate) fn swap(table: &TableName) -> [String; 2] {
    [
        format!("DROP TABLE {}", table.quoted()),
        format!(
            "ALTER TABLE {} RENAME TO {}",
            table.staging().quoted(),
            quote(&table.name)
        ),
    ]
}

/// PostgreSQL `upsert`: the file is copied into this temporary table, numbered in file order.
pub(crate) const UPSERT_STAGING: &str = "\"sluice_load_upsert\"";

pub(crate) fn create_upsert_staging(table: &TableName) -> [String; 2] {
    [
        format!(
            "CREATE TEMPORARY TABLE {UPSERT_STAGING} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
            table.quoted()
        ),
        format!(
            "ALTER TABLE {UPSERT_STAGING} ADD COLUMN {} bigserial",
            quote(ROW_NUMBER_COLUMN)
        ),
    ]
}

/// PostgreSQL `upsert`: one `INSERT … SELECT … ON CONFLICT` from the staging table, keeping
/// the last row of each key.
pub(crate) fn upsert_from_staging(table: &TableName, columns: &[String], key: &[String]) -> String {
    let keys = column_list(key);
    format!(
        "INSERT INTO {table} ({columns}) SELECT DISTINCT ON ({keys}) {columns} FROM {UPSERT_STAGING} ORDER BY {keys}, {row} DESC {conflict}",
        table = table.quoted(),
        columns = column_list(columns),
        row = quote(ROW_NUMBER_COLUMN),
        conflict = on_conflict(Dialect::Postgres, columns, key),
    )
}

/// SQLite: one multi-row `INSERT` of `rows` rows; an upsert's conflict clause follows.
pub(crate) fn insert_values(
    table: &TableName,
    columns: &[String],
    rows: usize,
    key: Option<&[String]>,
) -> String {
    let row = format!("({})", vec!["?"; columns.len()].join(", "));
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        table.quoted(),
        column_list(columns),
        vec![row.as_str(); rows].join(", ")
    );
    if let Some(key) = key {
        sql.push(' ');
        sql.push_str(&on_conflict(Dialect::Sqlite, columns, key));
    }
    sql
}

/// SQLite `replace`: the rows go in the same transaction, so readers still see the old ones
/// until it commits (SQLite has no `CREATE TABLE … LIKE`; its readers never wait on a writer).
pub(crate) fn delete_all(table: &TableName) -> String {
    format!("DELETE FROM {}", table.quoted())
}

fn on_conflict(dialect: Dialect, columns: &[String], key: &[String]) -> String {
    let excluded = match dialect {
        Dialect::Postgres => "EXCLUDED",
        Dialect::Sqlite => "excluded",
    };
    let updates: Vec<String> = columns
        .iter()
        .filter(|column| !key.contains(column))
        .map(|column| format!("{0} = {excluded}.{0}", quote(column)))
        .collect();
    if updates.is_empty() {
        format!("ON CONFLICT ({}) DO NOTHING", column_list(key))
    } else {
        format!(
            "ON CONFLICT ({}) DO UPDATE SET {}",
            column_list(key),
            updates.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType;

    use super::super::schema::FileKind;
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn quotes_every_identifier() {
        let table = TableName::parse("mart.sa\"les").unwrap();
        assert_eq!(table.quoted(), "\"mart\".\"sa\"\"les\"");
        assert_eq!(
            copy_in(&table.quoted(), &strings(&["id", "a b"])),
            "COPY \"mart\".\"sa\"\"les\" (\"id\", \"a b\") FROM STDIN"
        );
    }

    #[test]
    fn creates_tables_with_the_upsert_key_as_primary_key() {
        let columns = vec![
            FileColumn {
                name: "region".to_owned(),
                data_type: DataType::Utf8,
                kind: FileKind::Text,
            },
            FileColumn {
                name: "n".to_owned(),
                data_type: DataType::Int64,
                kind: FileKind::Integer,
            },
        ];
        let table = TableName::parse("sales").unwrap();
        assert_eq!(
            create_table(Dialect::Postgres, &table, &columns, &strings(&["region"])),
            "CREATE TABLE \"sales\" (\"region\" text, \"n\" bigint, PRIMARY KEY (\"region\"))"
        );
        assert_eq!(
            create_table(Dialect::Sqlite, &table, &columns, &[]),
            "CREATE TABLE \"sales\" (\"region\" TEXT, \"n\" INTEGER)"
        );
    }

    #[test]
    fn replace_fills_a_staging_table_then_swaps() {
        let table = TableName::parse("mart.sales").unwrap();
        assert_eq!(
            create_staging_like(&table),
            "CREATE TABLE \"mart\".\"sales__sluice_new\" (LIKE \"mart\".\"sales\" INCLUDING ALL)"
        );
        assert_eq!(
            swap(&table),
            [
                "DROP TABLE \"mart\".\"sales\"",
                "ALTER TABLE \"mart\".\"sales__sluice_new\" RENAME TO \"sales\""
            ]
        );
        let long = TableName::parse(&"é".repeat(40)).unwrap();
        assert!(long.staging().name().len() <= 63);
        assert!(long.staging().name().ends_with("__sluice_new"));
    }

    #[test]
    fn upserts_update_every_non_key_column() {
        let table = TableName::parse("sales").unwrap();
        assert_eq!(
            upsert_from_staging(&table, &strings(&["region", "n"]), &strings(&["region"])),
            "INSERT INTO \"sales\" (\"region\", \"n\") SELECT DISTINCT ON (\"region\") \"region\", \"n\" FROM \"sluice_load_upsert\" ORDER BY \"region\", \"__sluice_row\" DESC ON CONFLICT (\"region\") DO UPDATE SET \"n\" = EXCLUDED.\"n\""
        );
        assert_eq!(
            insert_values(
                &table,
                &strings(&["region", "n"]),
                2,
                Some(&strings(&["region"]))
            ),
            "INSERT INTO \"sales\" (\"region\", \"n\") VALUES (?, ?), (?, ?) ON CONFLICT (\"region\") DO UPDATE SET \"n\" = excluded.\"n\""
        );
        assert_eq!(
            insert_values(
                &table,
                &strings(&["region"]),
                1,
                Some(&strings(&["region"]))
            ),
            "INSERT INTO \"sales\" (\"region\") VALUES (?) ON CONFLICT (\"region\") DO NOTHING"
        );
        assert_eq!(
            insert_values(&table, &strings(&["region"]), 1, None),
            "INSERT INTO \"sales\" (\"region\") VALUES (?)"
        );
    }
}
