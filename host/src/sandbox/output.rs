//! Guest stdout and stderr, turned into log lines of the host.
//!
//! A guest's output is cut into lines and each line becomes one log event, tagged with
//! its instance and, when the instance serves one request, with that request (joining
//! its trace), so interleaved requests never mix their output and a guest cannot forge
//! host log lines by printing them. A line written in pieces (a `print!` per piece, a
//! flush per write, a new stream per write) is joined: each stream of an instance keeps
//! one buffer, and a last line without its newline is logged when the instance ends.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tracing::Span;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::occupancy::Occupancy;

/// Longest line kept whole; a longer one is logged in pieces of this size, so a guest
/// that prints without newlines cannot grow the host's memory.
const MAX_LINE: usize = 16 * 1024;

/// How much a guest may write in one call; output is never back-pressured.
const WRITE_BUDGET: usize = 64 * 1024;

/// Which of the guest's two output streams a [`GuestOutput`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
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

/// The stdout or stderr of one instance. Every stream the guest opens on it writes to
/// the same line buffer.
#[derive(Debug, Clone)]
pub struct GuestOutput(Arc<Mutex<LineLog>>);

/// One stream's unfinished line, and where its lines go.
#[derive(Debug)]
struct LineLog {
    stream: Stream,
    occupancy: Arc<Occupancy>,
    pending: LineBuffer,
}

impl GuestOutput {
    /// `stream` of the instance whose requests `occupancy` tracks.
    pub fn new(stream: Stream, occupancy: Arc<Occupancy>) -> Self {
        Self(Arc::new(Mutex::new(LineLog {
            stream,
            occupancy,
            pending: LineBuffer::default(),
        })))
    }

    fn append(&self, bytes: &[u8]) {
        let mut log = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let LineLog {
            stream,
            occupancy,
            pending,
        } = &mut *log;
        pending.push(bytes, |line| emit(*stream, occupancy, line));
    }
}

impl Drop for LineLog {
    fn drop(&mut self) {
        let (stream, occupancy) = (self.stream, &self.occupancy);
        self.pending.finish(|line| emit(stream, occupancy, line));
    }
}

/// Logs one line of `stream`'s output.
fn emit(stream: Stream, occupancy: &Occupancy, line: &str) {
    let visitor = occupancy.sole();
    let request_id = visitor.as_ref().map(|visitor| visitor.request_id);
    let span = visitor.map_or_else(Span::none, |visitor| visitor.span);
    let instance_id = occupancy.instance_id();
    let name = stream.name();
    match stream {
        Stream::Stdout => {
            tracing::info!(target: "guest", parent: &span, request_id, instance_id, stream = name, "{line}")
        }
        Stream::Stderr => {
            tracing::warn!(target: "guest", parent: &span, request_id, instance_id, stream = name, "{line}")
        }
    }
}

/// Bytes cut into lines: complete ones are handed out as they arrive, at most
/// [`MAX_LINE`] bytes each.
#[derive(Debug, Default)]
struct LineBuffer(Vec<u8>);

impl LineBuffer {
    fn push(&mut self, mut bytes: &[u8], mut line: impl FnMut(&str)) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            self.0.extend_from_slice(&bytes[..newline]);
            self.take(&mut line);
            bytes = &bytes[newline + 1..];
        }
        self.0.extend_from_slice(bytes);
        while self.0.len() >= MAX_LINE {
            let rest = self.0.split_off(MAX_LINE);
            self.take(&mut line);
            self.0 = rest;
        }
    }

    /// Hands out what is left, a line without its newline.
    fn finish(&mut self, mut line: impl FnMut(&str)) {
        if !self.0.is_empty() {
            self.take(&mut line);
        }
    }

    fn take(&mut self, line: &mut impl FnMut(&str)) {
        let text = String::from_utf8_lossy(&self.0);
        line(text.strip_suffix('\r').unwrap_or(&text));
        self.0.clear();
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    // Writing is synchronous, so the stream is used directly instead of through the
    // default adapter, which would spawn a task per stream.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
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

    /// What `buffer` hands out for `writes`, then for the end.
    fn lines(writes: &[&[u8]]) -> Vec<String> {
        let mut buffer = LineBuffer::default();
        let mut out = Vec::new();
        for bytes in writes {
            buffer.push(bytes, |line| out.push(line.to_owned()));
        }
        buffer.finish(|line| out.push(line.to_owned()));
        out
    }

    #[test]
    fn a_line_written_in_pieces_is_one_line() {
        assert_eq!(
            lines(&[b"start a print ", b"1", b"2", b"3", b"4\n"]),
            ["start a print 1234"]
        );
    }

    #[test]
    fn lines_are_split_on_newlines_and_the_last_is_kept_for_the_end() {
        assert_eq!(
            lines(&[b"one\r\ntwo\nthr", b"ee\nno newline"]),
            ["one", "two", "three", "no newline"]
        );
    }

    #[test]
    fn long_output_without_newlines_is_cut_at_the_cap() {
        let out = lines(&[&vec![b'x'; MAX_LINE * 3 + 5]]);
        let sizes: Vec<usize> = out.iter().map(String::len).collect();
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, MAX_LINE, 5]);
    }
}
