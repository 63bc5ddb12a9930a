//! A client stream the gateway can cut from outside: russh runs each connection in a task of
//! its own, which dropping its handle does not stop, and a client stalled in key exchange
//! never reads a disconnect. Once [`Cut::cut`] is called, reads see end-of-file and writes
//! fail, so the russh task ends and the socket is closed.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The switch shared by the stream and whoever may cut it.
#[derive(Clone, Default)]
pub struct Cut(Arc<CutState>);

#[derive(Default)]
struct CutState {
    cut: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl Cut {
    /// End the stream: a pending read wakes up to end-of-file.
    pub fn cut(&self) {
        self.0.cut.store(true, Ordering::SeqCst);
        let waker = self
            .0
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn is_cut(&self) -> bool {
        self.0.cut.load(Ordering::SeqCst)
    }
}

/// `S` with a [`Cut`] switch.
pub struct Cuttable<S> {
    inner: S,
    cut: Cut,
}

impl<S> Cuttable<S> {
    pub fn new(inner: S, cut: Cut) -> Cuttable<S> {
        Cuttable { inner, cut }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Cuttable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.cut.is_cut() {
            return Poll::Ready(Ok(()));
        }
        {
            // Every byte the client sends passes here: clone the waker only when it changed.
            let mut slot = self.cut.0.reader.lock().unwrap_or_else(|p| p.into_inner());
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        // Cut between the check and the registration: wake now rather than miss it.
        if self.cut.is_cut() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cuttable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.cut.is_cut() {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_cut_wakes_a_pending_read_with_end_of_file() {
        let (a, _b) = tokio::io::duplex(64);
        let cut = Cut::default();
        let mut s = Cuttable::new(a, cut.clone());
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            s.read(&mut buf).await.unwrap()
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        cut.cut();
        assert_eq!(read.await.unwrap(), 0);
    }
}
