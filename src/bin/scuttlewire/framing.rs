//! Lines over a Unix stream: the framing of the control protocol (one JSON
//! value per line, see `docs/OPERATIONS.md`), shared by the agent's server
//! (`control`) and the client commands (`client`).
//!
//! Built on tokio's readiness calls (`readable` + `try_read`, `writable` +
//! `try_write`), which come with the `net` feature the library already
//! needs, instead of `AsyncBufReadExt`, which would tie the binary to
//! tokio's `io-util` feature. Every read is capped at [`MAX_LINE`]: the
//! peer is a local process, but one that sends an endless line must cost a
//! bounded buffer, not the agent's memory.

use std::io;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// The longest line either side accepts, in bytes. A request is a few
/// hundred bytes; a `members` answer of a large cluster a few hundred
/// kilobytes, so answers get a larger cap ([`LineReader::with_limit`]).
pub const MAX_LINE: usize = 64 * 1024;

/// Reads `\n`-terminated lines from the read half of a stream.
pub struct LineReader {
    half: OwnedReadHalf,
    /// Bytes read but not yet returned as a line.
    buf: Vec<u8>,
    limit: usize,
}

impl LineReader {
    /// A reader of lines up to [`MAX_LINE`] bytes.
    pub fn new(half: OwnedReadHalf) -> LineReader {
        LineReader::with_limit(half, MAX_LINE)
    }

    /// A reader of lines up to `limit` bytes.
    pub fn with_limit(half: OwnedReadHalf, limit: usize) -> LineReader {
        LineReader {
            half,
            buf: Vec::new(),
            limit,
        }
    }

    /// The next line without its `\n` (or `\r\n`); `None` at the end of the
    /// stream. A last line without `\n` still counts as a line.
    ///
    /// Cancel-safe: bytes are only moved into the buffer after a read that
    /// completed, so a `select!` may drop this future and call it again.
    pub async fn read_line(&mut self) -> io::Result<Option<String>> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return into_text(line).map(Some);
            }
            if self.buf.len() > self.limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a line longer than {} bytes", self.limit),
                ));
            }
            self.half.readable().await?;
            match self.half.try_read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return into_text(std::mem::take(&mut self.buf)).map(Some),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // Readiness can be spurious: wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn into_text(line: Vec<u8>) -> io::Result<String> {
    String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a line that is not UTF-8"))
}

/// Writes lines to the write half of a stream.
pub struct LineWriter {
    half: OwnedWriteHalf,
}

impl LineWriter {
    /// A writer over `half`.
    pub fn new(half: OwnedWriteHalf) -> LineWriter {
        LineWriter { half }
    }

    /// Writes `text` and a `\n`, all of it, before returning. `text` must
    /// not contain a newline (compact JSON never does).
    pub async fn write_line(&mut self, text: &str) -> io::Result<()> {
        let mut data = Vec::with_capacity(text.len() + 1);
        data.extend_from_slice(text.as_bytes());
        data.push(b'\n');
        let mut rest = data.as_slice();
        while !rest.is_empty() {
            self.half.writable().await?;
            match self.half.try_write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixStream;

    /// A writer and a reader joined by a socket pair (the unused halves
    /// are dropped: that closes only their own direction).
    fn pair(limit: usize) -> (LineWriter, LineReader) {
        let (a, b) = UnixStream::pair().unwrap();
        let (_, aw) = a.into_split();
        let (br, _) = b.into_split();
        (LineWriter::new(aw), LineReader::with_limit(br, limit))
    }

    #[tokio::test]
    async fn lines_arrive_whole_and_in_order_then_the_end() {
        let (mut w, mut r) = pair(MAX_LINE);
        w.write_line(r#"{"v":1}"#).await.unwrap();
        w.write_line(&"x".repeat(10_000)).await.unwrap();
        drop(w);
        assert_eq!(r.read_line().await.unwrap().as_deref(), Some(r#"{"v":1}"#));
        assert_eq!(r.read_line().await.unwrap().map(|l| l.len()), Some(10_000));
        assert_eq!(r.read_line().await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_endless_line_is_refused_not_buffered() {
        let (mut w, mut r) = pair(100);
        let writer = tokio::spawn(async move {
            let _ = w.write_line(&"y".repeat(10_000)).await;
        });
        let err = r.read_line().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        drop(r);
        let _ = writer.await;
    }
}
