//! The error type shared by the vssl crates.

use std::path::PathBuf;

/// Errors raised by vssl's tensor ops and file helpers.
///
/// Every variant names what failed: the op and the shapes it was given, or the file and what is
/// wrong with it. Convert into [`candle_core::Error`] with `?` where candle's `Result` is needed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An op was called with arguments it cannot work on (wrong rank, mismatched shapes, k larger
    /// than the axis, a negative radius, a non-f32 tensor, ...).
    #[error("{op}: {msg}")]
    Op {
        /// The op's name, e.g. `grid_sample`.
        op: &'static str,
        /// What is wrong, with the shapes involved.
        msg: String,
    },
    /// A file could not be read or does not hold what was expected.
    #[error("{}: {msg}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with vssl's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Op`] for `op` with the message `msg`.
    pub fn op(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Op {
            op,
            msg: msg.into(),
        }
    }

    /// An [`Error::File`] for `path` with the message `msg`.
    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

impl From<Error> for candle_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Candle(c) => c,
            other => candle_core::Error::Msg(other.to_string()),
        }
    }
}

/// Returns an [`Error::Op`] from the enclosing function when `cond` is false.
///
/// ```ignore
/// ensure!(x.rank() == 4, "grid_sample", "input must be [N, C, H, W], got {:?}", x.dims());
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $op:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::Error::op($op, format!($($arg)+)).into());
        }
    };
}
