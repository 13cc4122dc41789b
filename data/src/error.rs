use std::path::PathBuf;

/// What went wrong with a data file or a batch query, naming the file, input or statement.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The format could not be told from the path and none was given.
    #[error(
        "cannot tell the format of {}: use a .csv, .jsonl (or .json, .ndjson) or .parquet name, or set `format:`",
        path.display()
    )]
    UnknownFormat { path: PathBuf },

    /// A file or folder could not be read, created, written or renamed.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },

    /// The file's contents are not what its format says, or records do not fit one schema.
    #[error("{}: {message}", path.display())]
    Content { path: PathBuf, message: String },

    /// A named input of a batch step has no file to read.
    #[error("input `{input}`: {message}: {}", path.display())]
    MissingInput {
        input: String,
        path: PathBuf,
        message: &'static str,
    },

    /// A named input could not be registered as a table (its files do not parse).
    #[error("input `{input}` ({}): {message}", path.display())]
    Input {
        input: String,
        path: PathBuf,
        message: String,
    },

    /// A SQL statement failed to parse, plan or run; `number` counts from 1 over all statements.
    #[error("statement {number}: {message}")]
    Statement { number: usize, message: String },

    /// The batch has nothing to run or an option contradicts another.
    #[error("{0}")]
    Invalid(String),

    /// Writing the result failed.
    #[error("writing {}: {message}", path.display())]
    Output { path: PathBuf, message: String },

    /// The work was cancelled; nothing was left behind.
    #[error("cancelled")]
    Cancelled,
}

impl DataError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        DataError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn content(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        DataError::Content {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
