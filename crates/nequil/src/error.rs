//! The library's error type.
//!
//! Every fallible public function returns [`Result`]. Errors carry a message meant for a person:
//! they name the offending key, file, tensor or step, so that the command-line front end can print
//! them as they are.

use std::fmt;

/// What went wrong, grouped by who has to act on it.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The input given by the user (a spec, a flag, a shape) is invalid. The message names the key.
    Invalid(String),
    /// A file could not be read or written, or its contents are malformed.
    Io(String),
    /// Training diverged: a loss or parameter became non-finite at `step`.
    Diverged {
        /// The step (0-based count of updates already applied) at which divergence was detected.
        step: u64,
        /// What was found to be non-finite.
        what: String,
    },
    /// A numerical routine failed (e.g. a factorisation of a matrix that is not positive definite).
    Numerical(String),
    /// An instrument failed during a run: the run stops there, as on divergence, keeping the log
    /// up to the last complete row.
    ProbeFailed {
        /// The instrument, by its spec key (`probes.hessian.top_eigen`) or its own name.
        probe: String,
        /// The number of updates applied when it failed.
        step: u64,
        /// The instrument's error message.
        error: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "invalid input: {m}"),
            Error::Io(m) => write!(f, "{m}"),
            Error::Diverged { step, what } => write!(f, "training diverged at step {step}: {what}"),
            Error::Numerical(m) => write!(f, "numerical failure: {m}"),
            Error::ProbeFailed { probe, step, error } => write!(f, "probe {probe} failed at step {step}: {error}"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for `std::result::Result<T, nequil::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error::Invalid`] from a format string.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::Error::Invalid(format!($($arg)*)) };
}

/// Builds an [`Error::Io`] from a format string.
#[macro_export]
macro_rules! io_err {
    ($($arg:tt)*) => { $crate::error::Error::Io(format!($($arg)*)) };
}

/// The message of a caught panic, from its payload (what [`std::panic::catch_unwind`] returns in
/// its `Err`, or [`std::panic::PanicHookInfo::payload`]): the text of `panic!("…")`, `assert!`,
/// `expect`, an index out of bounds, …; `"unknown panic"` for a payload that is not a string
/// (`std::panic::panic_any` with another type).
///
/// Pass the payload itself, not its box: with `p: Box<dyn Any + Send>`, call
/// `panic_message(&*p)` (`&p` would be the box, which is not a string).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_of_every_payload() {
        let caught = |f: fn()| std::panic::catch_unwind(f).unwrap_err();
        let literal = caught(|| panic!("a literal"));
        let formatted = caught(|| panic!("formatted {}", 42));
        let index = caught(|| {
            let v: Vec<u8> = Vec::new();
            let i = std::hint::black_box(3);
            let _ = v[i];
        });
        let other = caught(|| std::panic::panic_any(7u32));
        assert_eq!(panic_message(&*literal), "a literal");
        assert_eq!(panic_message(&*formatted), "formatted 42");
        assert_eq!(
            panic_message(&*index),
            "index out of bounds: the len is 0 but the index is 3"
        );
        assert_eq!(panic_message(&*other), "unknown panic");
        // The box itself is not a payload.
        assert_eq!(panic_message(&literal), "unknown panic");
    }
}
