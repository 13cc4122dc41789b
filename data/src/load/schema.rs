//! The file's columns and the table's: Arrow types to SQL types per database, and which file
//! types a table column accepts.

use std::collections::HashSet;

use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};

use super::LoadError;
use super::sql::Dialect;

/// A column of the file: its name, the type batches are converted to before encoding, and
/// what kind of value that is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileColumn {
    pub name: String,
    pub data_type: DataType,
    pub kind: FileKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A column of nulls only (an empty JSON field, a CSV column with no value).
    Null,
    Boolean,
    Integer,
    Float,
    Decimal,
    Text,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    Binary,
}

/// What a table column holds, read from its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableKind {
    Boolean,
    Integer,
    Float,
    Numeric,
    Text,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    Binary,
    Json,
    Uuid,
    /// Anything else (an enum, an array, an untyped SQLite column): the database decides.
    Other,
}

/// A column of an existing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableColumn {
    pub name: String,
    /// As the database states it: `integer`, `character varying(20)`, `TEXT`, ``.
    pub declared: String,
}

pub(crate) fn file_columns(schema: &Schema, file: &str) -> Result<Vec<FileColumn>, LoadError> {
    let mut seen = HashSet::new();
    schema
        .fields()
        .iter()
        .map(|field| {
            let name = field.name().clone();
            if !seen.insert(name.clone()) {
                return Err(LoadError::DuplicateColumn {
                    column: name,
                    file: file.to_owned(),
                });
            }
            let unsupported = || LoadError::UnsupportedType {
                column: name.clone(),
                file: file.to_owned(),
                data_type: field.data_type().to_string(),
            };
            let data_type = encodable(field.data_type()).ok_or_else(unsupported)?;
            let kind = kind_of(&data_type).ok_or_else(unsupported)?;
            Ok(FileColumn {
                name,
                data_type,
                kind,
            })
        })
        .collect()
}

/// The type a column is cast to before encoding: dictionaries become their values, small
/// decimals and half floats widen.
fn encodable(data_type: &DataType) -> Option<DataType> {
    Some(match data_type {
        DataType::Dictionary(_, values) => return encodable(values),
        DataType::Float16 => DataType::Float32,
        DataType::Decimal32(precision, scale) | DataType::Decimal64(precision, scale) => {
            DataType::Decimal128(*precision, *scale)
        }
        other => other.clone(),
    })
}

fn kind_of(data_type: &DataType) -> Option<FileKind> {
    Some(match data_type {
        DataType::Null => FileKind::Null,
        DataType::Boolean => FileKind::Boolean,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => FileKind::Integer,
        DataType::Float32 | DataType::Float64 => FileKind::Float,
        DataType::Decimal128(..) | DataType::Decimal256(..) => FileKind::Decimal,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FileKind::Text,
        DataType::Date32 | DataType::Date64 => FileKind::Date,
        DataType::Timestamp(_, None) => FileKind::Timestamp,
        DataType::Timestamp(_, Some(_)) => FileKind::TimestampTz,
        DataType::Time32(TimeUnit::Second | TimeUnit::Millisecond)
        | DataType::Time64(TimeUnit::Microsecond | TimeUnit::Nanosecond) => FileKind::Time,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => FileKind::Binary,
        _ => return None,
    })
}

/// The column type a created table gets for a file column.
pub(crate) fn sql_type(dialect: Dialect, column: &FileColumn) -> String {
    let postgres = match &column.data_type {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 => "bigint",
        DataType::UInt64 => "numeric(20, 0)",
        DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            return match dialect {
                Dialect::Postgres => format!("numeric({precision}, {scale})"),
                Dialect::Sqlite => "NUMERIC".to_owned(),
            };
        }
        DataType::Boolean => "boolean",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Time32(_) | DataType::Time64(_) => "time",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "bytea",
        _ => "text",
    };
    let sqlite = match column.kind {
        FileKind::Integer => "INTEGER",
        FileKind::Float => "REAL",
        FileKind::Decimal => "NUMERIC",
        FileKind::Boolean => "BOOLEAN",
        FileKind::Date => "DATE",
        FileKind::Timestamp | FileKind::TimestampTz => "TIMESTAMP",
        FileKind::Binary => "BLOB",
        FileKind::Null | FileKind::Text | FileKind::Time => "TEXT",
    };
    match dialect {
        Dialect::Postgres => postgres.to_owned(),
        Dialect::Sqlite => sqlite.to_owned(),
    }
}

/// What a table column holds. PostgreSQL names its types exactly (`format_type`); SQLite
/// only has affinities, read from the declared type by its rules (`INT` anywhere is an
/// integer), with booleans, dates and times told apart by name.
pub(crate) fn table_kind(dialect: Dialect, declared: &str) -> TableKind {
    let declared = declared.to_ascii_lowercase();
    let base = declared.split('(').next().unwrap_or("").trim();
    match dialect {
        Dialect::Postgres => match base {
            "smallint" | "integer" | "bigint" => TableKind::Integer,
            "real" | "double precision" => TableKind::Float,
            "numeric" | "money" => TableKind::Numeric,
            "boolean" => TableKind::Boolean,
            "text" | "character varying" | "character" | "name" | "citext" | "\"char\"" => {
                TableKind::Text
            }
            "date" => TableKind::Date,
            "bytea" => TableKind::Binary,
            "json" | "jsonb" => TableKind::Json,
            "uuid" => TableKind::Uuid,
            _ if base.starts_with("timestamp") => {
                if declared.ends_with("with time zone") {
                    TableKind::TimestampTz
                } else {
                    TableKind::Timestamp
                }
            }
            _ if base.starts_with("time") => TableKind::Time,
            _ => TableKind::Other,
        },
        Dialect::Sqlite => {
            if declared.contains("int") {
                TableKind::Integer
            } else if ["char", "clob", "text"]
                .iter()
                .any(|w| declared.contains(w))
            {
                TableKind::Text
            } else if declared.is_empty() || declared.contains("blob") {
                TableKind::Other
            } else if ["real", "floa", "doub"]
                .iter()
                .any(|w| declared.contains(w))
            {
                TableKind::Float
            } else if declared.contains("bool") {
                TableKind::Boolean
            } else if declared.contains("timestamp") || declared.contains("datetime") {
                TableKind::Timestamp
            } else if declared.contains("date") {
                TableKind::Date
            } else if declared.contains("time") {
                TableKind::Time
            } else {
                TableKind::Numeric
            }
        }
    }
}

/// Whether values of a file column can go into a table column without losing their meaning
/// (what the database would still reject, a too-long string or an out-of-range number,
/// fails the load and rolls it back).
pub(crate) fn converts(dialect: Dialect, file: FileKind, table: TableKind) -> bool {
    use FileKind as F;
    use TableKind as T;
    if table == T::Other || file == F::Null {
        return true;
    }
    match file {
        F::Null => true,
        F::Integer => matches!(table, T::Integer | T::Float | T::Numeric | T::Text),
        F::Float | F::Decimal => matches!(table, T::Float | T::Numeric | T::Text),
        // SQLite stores booleans as 0 and 1
        F::Boolean => {
            matches!(table, T::Boolean | T::Text)
                || (dialect == Dialect::Sqlite && matches!(table, T::Integer | T::Numeric))
        }
        F::Text => matches!(
            table,
            T::Text | T::Json | T::Uuid | T::Date | T::Timestamp | T::TimestampTz | T::Time
        ),
        F::Date => matches!(table, T::Date | T::Timestamp | T::TimestampTz | T::Text),
        F::Timestamp | F::TimestampTz => {
            matches!(table, T::Timestamp | T::TimestampTz | T::Text)
        }
        F::Time => matches!(table, T::Time | T::Text),
        F::Binary => table == T::Binary,
    }
}

/// Each file column's column in the existing table (its exact name, else the one name that
/// matches ignoring case), or a schema mismatch naming the column, the file and the table.
pub(crate) fn match_columns(
    dialect: Dialect,
    file_columns: &[FileColumn],
    table_columns: &[TableColumn],
    file: &str,
    table: &str,
) -> Result<Vec<String>, LoadError> {
    file_columns
        .iter()
        .map(|column| {
            let exact = table_columns.iter().find(|c| c.name == column.name);
            let found = exact.or_else(|| {
                let mut folded = table_columns
                    .iter()
                    .filter(|c| c.name.eq_ignore_ascii_case(&column.name));
                match (folded.next(), folded.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            });
            let Some(target) = found else {
                return Err(LoadError::SchemaMismatch {
                    detail: format!(
                        "`{file}` has column `{}` that table `{table}` lacks",
                        column.name
                    ),
                });
            };
            if !converts(dialect, column.kind, table_kind(dialect, &target.declared)) {
                return Err(LoadError::SchemaMismatch {
                    detail: format!(
                        "column `{}` of `{file}` is {} ({}), which cannot convert to column `{}` of table `{table}` ({})",
                        column.name,
                        describe(column.kind),
                        column.data_type,
                        target.name,
                        if target.declared.is_empty() { "untyped" } else { &target.declared }
                    ),
                });
            }
            Ok(target.name.clone())
        })
        .collect()
}

fn describe(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Null => "empty",
        FileKind::Boolean => "boolean",
        FileKind::Integer => "integer",
        FileKind::Float => "floating-point",
        FileKind::Decimal => "decimal",
        FileKind::Text => "text",
        FileKind::Date => "a date",
        FileKind::Timestamp | FileKind::TimestampTz => "a timestamp",
        FileKind::Time => "a time of day",
        FileKind::Binary => "binary",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::Field;

    use super::*;

    fn columns(fields: Vec<(&str, DataType)>) -> Vec<FileColumn> {
        let schema = Schema::new(
            fields
                .into_iter()
                .map(|(name, data_type)| Field::new(name, data_type, true))
                .collect::<Vec<_>>(),
        );
        file_columns(&schema, "in.csv").unwrap()
    }

    fn table(columns: &[(&str, &str)]) -> Vec<TableColumn> {
        columns
            .iter()
            .map(|(name, declared)| TableColumn {
                name: (*name).to_owned(),
                declared: (*declared).to_owned(),
            })
            .collect()
    }

    #[test]
    fn maps_arrow_types_to_sql_types_per_database() {
        let cases = [
            (DataType::Int64, "bigint", "INTEGER"),
            (DataType::Int32, "integer", "INTEGER"),
            (DataType::UInt64, "numeric(20, 0)", "INTEGER"),
            (DataType::Float64, "double precision", "REAL"),
            (DataType::Decimal128(12, 2), "numeric(12, 2)", "NUMERIC"),
            (DataType::Boolean, "boolean", "BOOLEAN"),
            (DataType::Utf8, "text", "TEXT"),
            (DataType::Utf8View, "text", "TEXT"),
            (DataType::Date32, "date", "DATE"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                "timestamp",
                "TIMESTAMP",
            ),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from("+00:00"))),
                "timestamptz",
                "TIMESTAMP",
            ),
            (DataType::Binary, "bytea", "BLOB"),
            (DataType::Null, "text", "TEXT"),
            (
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                "text",
                "TEXT",
            ),
        ];
        for (data_type, postgres, sqlite) in cases {
            let column = &columns(vec![("c", data_type.clone())])[0];
            assert_eq!(sql_type(Dialect::Postgres, column), postgres, "{data_type}");
            assert_eq!(sql_type(Dialect::Sqlite, column), sqlite, "{data_type}");
        }
    }

    #[test]
    fn nested_types_and_repeated_columns_are_refused_by_name() {
        let schema = Schema::new(vec![Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        )]);
        let error = file_columns(&schema, "in.jsonl").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("column `tags` of `in.jsonl` has type List("),
            "{error}"
        );
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("a", DataType::Utf8, true),
        ]);
        assert_eq!(
            file_columns(&schema, "in.csv").unwrap_err().to_string(),
            "`in.csv` has column `a` twice"
        );
    }

    #[test]
    fn reads_declared_types() {
        let postgres = [
            ("bigint", TableKind::Integer),
            ("character varying(20)", TableKind::Text),
            ("numeric(12,2)", TableKind::Numeric),
            ("timestamp(3) without time zone", TableKind::Timestamp),
            ("timestamp with time zone", TableKind::TimestampTz),
            ("time without time zone", TableKind::Time),
            ("interval", TableKind::Other),
            ("jsonb", TableKind::Json),
            ("integer[]", TableKind::Other),
        ];
        for (declared, kind) in postgres {
            assert_eq!(table_kind(Dialect::Postgres, declared), kind, "{declared}");
        }
        let sqlite = [
            ("INTEGER", TableKind::Integer),
            ("BIGINT", TableKind::Integer),
            ("VARCHAR(10)", TableKind::Text),
            ("", TableKind::Other),
            ("DOUBLE", TableKind::Float),
            ("BOOLEAN", TableKind::Boolean),
            ("DATETIME", TableKind::Timestamp),
            ("DATE", TableKind::Date),
            ("DECIMAL(10,2)", TableKind::Numeric),
        ];
        for (declared, kind) in sqlite {
            assert_eq!(table_kind(Dialect::Sqlite, declared), kind, "{declared}");
        }
    }

    #[test]
    fn matches_file_columns_to_table_columns() {
        let file = columns(vec![("id", DataType::Int64), ("Region", DataType::Utf8)]);
        let existing = table(&[("region", "text"), ("id", "integer"), ("extra", "text")]);
        assert_eq!(
            match_columns(Dialect::Postgres, &file, &existing, "in.csv", "sales").unwrap(),
            ["id", "region"]
        );
    }

    #[test]
    fn a_missing_column_or_a_type_that_cannot_convert_is_a_schema_mismatch() {
        let file = columns(vec![("id", DataType::Int64), ("note", DataType::Utf8)]);
        let error = match_columns(
            Dialect::Postgres,
            &file,
            &table(&[("id", "bigint")]),
            "in.csv",
            "sales",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "schema mismatch: `in.csv` has column `note` that table `sales` lacks; nothing was loaded"
        );
        let error = match_columns(
            Dialect::Sqlite,
            &file,
            &table(&[("id", "INTEGER"), ("note", "INTEGER")]),
            "in.csv",
            "sales",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "schema mismatch: column `note` of `in.csv` is text (Utf8), which cannot convert to column `note` of table `sales` (INTEGER); nothing was loaded"
        );
    }

    #[test]
    fn conversions_follow_meaning() {
        use FileKind as F;
        use TableKind as T;
        let accepted = [
            (F::Integer, T::Numeric),
            (F::Integer, T::Text),
            (F::Text, T::Date),
            (F::Text, T::Uuid),
            (F::Date, T::Timestamp),
            (F::Null, T::Integer),
            (F::Binary, T::Other),
        ];
        for (file, table) in accepted {
            assert!(
                converts(Dialect::Postgres, file, table),
                "{file:?} → {table:?}"
            );
        }
        let refused = [
            (F::Text, T::Integer),
            (F::Float, T::Integer),
            (F::Boolean, T::Integer),
            (F::Timestamp, T::Date),
            (F::Binary, T::Text),
        ];
        for (file, table) in refused {
            assert!(
                !converts(Dialect::Postgres, file, table),
                "{file:?} → {table:?}"
            );
        }
        assert!(converts(Dialect::Sqlite, F::Boolean, T::Integer));
    }
}
