//! Reading an input log line by line with a bound on the line length: a
//! longer line is skipped (and reported), never buffered whole.

use std::io::{self, BufRead};

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes, without the trailing `\n` / `\r\n`.
    Text(&'a [u8]),
    /// The line was longer than the bound; its length in bytes.
    TooLong(u64),
}

/// A bounded line reader over any `BufRead`.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
    bytes_read: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Lines longer than `max` bytes are reported as [`Line::TooLong`].
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            buf: Vec::new(),
            bytes_read: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let mut len: u64 = 0;
        let mut overflow = false;
        let mut any = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (chunk_len, consumed, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, i + 1, true),
                None => (avail.len(), avail.len(), false),
            };
            len += chunk_len as u64;
            if !overflow {
                if self.buf.len() + chunk_len > self.max {
                    overflow = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(&avail[..chunk_len]);
                }
            }
            self.inner.consume(consumed);
            self.bytes_read += consumed as u64;
            if done {
                break;
            }
        }
        if overflow {
            return Ok(Some(Line::TooLong(len)));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line::Text(&self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize, cap: usize) -> Vec<String> {
        let mut r = LineReader::new(io::BufReader::with_capacity(cap, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(match l {
                Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Line::TooLong(n) => format!("<{n}>"),
            });
        }
        out
    }

    #[test]
    fn splits_lines_and_bounds_their_length() {
        let input = b"a\r\nbb\n\n0123456789abc\nlast";
        for cap in [1, 2, 3, 7, 64] {
            assert_eq!(
                all(input, 10, cap),
                vec!["a", "bb", "", "<13>", "last"],
                "buffer capacity {cap}"
            );
        }
        assert_eq!(all(b"", 10, 8), Vec::<String>::new());
        assert_eq!(all(b"x\n", 10, 8), vec!["x"]);
        assert_eq!(all(b"0123456789\n", 10, 4), vec!["0123456789"]);
    }

    #[test]
    fn counts_bytes() {
        let mut r = LineReader::new(&b"a\nbc\n"[..], 10);
        while r.next_line().unwrap().is_some() {}
        assert_eq!(r.bytes_read(), 5);
    }
}
