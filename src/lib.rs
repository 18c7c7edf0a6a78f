//! placeholder
pub use wsock_runtime::*;
