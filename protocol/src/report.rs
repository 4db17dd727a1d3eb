//! How camring prints an error: the error, then each of its causes, `: `-separated, as
//! anyhow's `{:#}` prints a chain.
//!
//! The convention of every error type in the workspace: its `Display` says what went wrong
//! at its own level only, and the error it wraps is its `source()`, never also part of its
//! message (so nothing is said twice). Binaries print errors with anyhow's `{:#}`; library
//! code that logs an error it does not return prints [`Report`].

use std::error::Error;
use std::fmt;

/// An error with its causes, for `Display`.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open ring {0:?}")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let e = Outer(
            "r",
            std::io::Error::other("too many levels of symbolic links"),
        );
        assert_eq!(
            Report(&e).to_string(),
            "cannot open ring \"r\": too many levels of symbolic links"
        );
    }
}
