//! Authentication: signing keys, access and refresh tokens, passwords, and the
//! `Caller` extractor that every protected route takes.

pub mod caller;
pub mod keys;
pub mod password;
pub mod refresh;
pub mod tokens;

pub use caller::Caller;
