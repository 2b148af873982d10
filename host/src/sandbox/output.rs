//! Guest stdout and stderr, turned into log lines of the host.
//!
//! A guest's output is split into lines and each line becomes one log event tagged with
//! the request it came from, so interleaved requests never mix their output and a guest
//! cannot forge host log lines by printing them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept whole; a longer one is logged in pieces of this size, so a guest
/// that prints without newlines cannot grow the host's memory.
const MAX_LINE: usize = 16 * 1024;

/// How much a guest may write in one call; output is never back-pressured.
const WRITE_BUDGET: usize = 64 * 1024;

/// Which of the guest's two output streams a [`GuestOutput`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The stdout or stderr given to one request's guest.
#[derive(Debug, Clone)]
pub struct GuestOutput {
    stream: Stream,
    request_id: u64,
}

impl GuestOutput {
    /// Output of `stream` for request `request_id`.
    pub fn new(stream: Stream, request_id: u64) -> Self {
        Self { stream, request_id }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            output: self.clone(),
            pending: Vec::new(),
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    // Writing is synchronous, so the stream is used directly instead of through the
    // default adapter, which would spawn a task per stream.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }
}

/// Collects bytes and logs each complete line.
struct LineWriter {
    output: GuestOutput,
    pending: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&bytes[..newline]);
            self.emit();
            bytes = &bytes[newline + 1..];
        }
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            self.emit();
            self.pending = rest;
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        let GuestOutput { stream, request_id } = self.output;
        match stream {
            Stream::Stdout => {
                tracing::info!(target: "guest", request_id, stream = stream.name(), "{line}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "guest", request_id, stream = stream.name(), "{line}")
            }
        }
        self.pending.clear();
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_without_newlines_is_bounded() {
        let mut writer = GuestOutput::new(Stream::Stdout, 1).writer();
        writer.push(&vec![b'x'; MAX_LINE * 3 + 5]);
        assert_eq!(writer.pending.len(), 5);
    }

    #[test]
    fn lines_are_split_on_newlines() {
        let mut writer = GuestOutput::new(Stream::Stderr, 1).writer();
        writer.push(b"one\ntwo\nthr");
        assert_eq!(writer.pending, b"thr");
        writer.push(b"ee\n");
        assert!(writer.pending.is_empty());
    }
}
