//! The error of connecting to Redis.

use std::fmt;

/// Redis could not be reached, or the address is not a Redis URL.
#[derive(Debug)]
pub struct Error {
    pub(crate) message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
