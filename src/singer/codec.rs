//! Reading Singer lines with a length limit, synchronously (plugins) and asynchronously (the
//! pipeline). A line longer than the limit is an error naming its number, never an unbounded
//! allocation.

use std::io::BufRead;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The default limit on one line: 100 MiB.
pub const DEFAULT_MAX_LINE: usize = 100 * 1024 * 1024;

/// A line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line is longer than the limit.
    #[error("line {line_number} is longer than the limit of {limit} bytes")]
    TooLong {
        /// 1-based line number.
        line_number: u64,
        /// The limit in bytes.
        limit: usize,
        /// The first bytes of the line.
        excerpt: String,
    },
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads lines up to a length limit, counting them.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    limit: usize,
    line_number: u64,
}

impl<R> LineReader<R> {
    /// Wraps a buffered reader.
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            limit,
            line_number: 0,
        }
    }

    /// The number of the line last returned (1-based; 0 before the first).
    pub fn line_number(&self) -> u64 {
        self.line_number
    }

    fn too_long(&self, buf: &[u8]) -> LineError {
        LineError::TooLong {
            line_number: self.line_number,
            limit: self.limit,
            excerpt: excerpt(buf, 80),
        }
    }
}

/// The first `max` characters of a line, for error messages.
pub fn excerpt(line: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(max * 4)]);
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max || line.len() > max * 4 {
        out.push('…');
    }
    out
}

fn trim_newline(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
}

impl<R: BufRead> LineReader<R> {
    /// Reads the next line into `buf` (cleared first, newline removed). `Ok(false)` at the end.
    pub fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, LineError> {
        buf.clear();
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if available.is_empty() {
                if buf.is_empty() {
                    return Ok(false);
                }
                self.line_number += 1;
                return Ok(true);
            }
            let (chunk, done) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..=i], true),
                None => (available, false),
            };
            let n = chunk.len();
            if buf.len() + n > self.limit + 2 {
                self.line_number += 1;
                let keep = self.limit.min(320).saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..keep.min(n)]);
                let err = self.too_long(buf);
                self.inner.consume(n);
                return Err(err);
            }
            buf.extend_from_slice(chunk);
            self.inner.consume(n);
            if done {
                self.line_number += 1;
                trim_newline(buf);
                if buf.len() > self.limit {
                    return Err(self.too_long(buf));
                }
                return Ok(true);
            }
        }
    }
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Async twin of [`LineReader::read_line`].
    pub async fn read_line_async(&mut self, buf: &mut Vec<u8>) -> Result<bool, LineError> {
        buf.clear();
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if buf.is_empty() {
                    return Ok(false);
                }
                self.line_number += 1;
                return Ok(true);
            }
            let (chunk, done) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..=i], true),
                None => (available, false),
            };
            let n = chunk.len();
            if buf.len() + n > self.limit + 2 {
                self.line_number += 1;
                let keep = self.limit.min(320).saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..keep.min(n)]);
                let err = self.too_long(buf);
                self.inner.consume(n);
                return Err(err);
            }
            buf.extend_from_slice(chunk);
            self.inner.consume(n);
            if done {
                self.line_number += 1;
                trim_newline(buf);
                if buf.len() > self.limit {
                    return Err(self.too_long(buf));
                }
                return Ok(true);
            }
        }
    }

    /// Skips the rest of the current over-long line after a [`LineError::TooLong`] (lenient mode).
    pub async fn skip_rest_of_line_async(&mut self) -> Result<(), LineError> {
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(());
            }
            match memchr::memchr(b'\n', available) {
                Some(i) => {
                    self.inner.consume(i + 1);
                    return Ok(());
                }
                None => {
                    let n = available.len();
                    self.inner.consume(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_and_counts_them() {
        let data = b"{\"a\":1}\r\n{\"b\":2}\nlast";
        let mut r = LineReader::new(&data[..], 100);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while r.read_line(&mut buf).unwrap() {
            lines.push((r.line_number(), String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            lines,
            vec![
                (1, "{\"a\":1}".into()),
                (2, "{\"b\":2}".into()),
                (3, "last".into())
            ]
        );
    }

    #[test]
    fn a_long_line_is_an_error_naming_its_number() {
        let mut data = b"ok\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 5000));
        data.push(b'\n');
        let mut r = LineReader::new(std::io::BufReader::with_capacity(64, &data[..]), 1000);
        let mut buf = Vec::new();
        assert!(r.read_line(&mut buf).unwrap());
        match r.read_line(&mut buf) {
            Err(LineError::TooLong {
                line_number,
                limit,
                excerpt,
            }) => {
                assert_eq!(line_number, 2);
                assert_eq!(limit, 1000);
                assert!(excerpt.starts_with("xxxx"));
            }
            other => panic!("expected TooLong, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn async_reader_matches_sync_reader() {
        let data = b"one\ntwo\n\nthree";
        let mut r = LineReader::new(tokio::io::BufReader::with_capacity(2, &data[..]), 100);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while r.read_line_async(&mut buf).await.unwrap() {
            got.push(String::from_utf8(buf.clone()).unwrap());
        }
        assert_eq!(got, vec!["one", "two", "", "three"]);
    }
}
