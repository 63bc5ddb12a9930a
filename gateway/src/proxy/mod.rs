//! Protocol adapters, one per protocol, all driving [`crate::session`]. Each knows its wire
//! format and nothing of Wasm or redb.

pub mod accept;
pub mod postgres;
pub mod ssh;
pub mod tls;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream that may or may not be TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed [`Io`], so plain and TLS connections take one code path.
pub type BoxedIo = Box<dyn Io>;
