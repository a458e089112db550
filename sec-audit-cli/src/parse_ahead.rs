//! Parsing ahead of evaluation: one thread reads and parses the input log
//! in batches while the caller's thread evaluates the batches before them,
//! in file order. Parsing reads no replay state ([`ParsedInput::of`]), so
//! the result is the same as parsing each line where it is evaluated.
//!
//! The caller looks at each batch in place; the batch then goes back to
//! the parsing thread to be dropped there, so freeing the events (their
//! attribute maps) costs the evaluating thread nothing.
//!
//! At most [`BATCHES_IN_FLIGHT`] batches of [`BATCH_LINES`] lines wait
//! between the two threads: memory stays bounded whatever the log's size,
//! and a reader that is faster than evaluation blocks instead of running
//! ahead.

use std::io::{self, BufRead};
use std::ops::ControlFlow;
use std::sync::mpsc;

use crate::lines::LineReader;
use crate::replay::ParsedInput;

/// Lines per batch handed from the parsing thread to the evaluating one.
pub const BATCH_LINES: usize = 256;
/// Batches parsed ahead and not yet taken.
pub const BATCHES_IN_FLIGHT: usize = 4;

/// A run of consecutive input lines, parsed.
#[derive(Debug)]
pub struct Batch {
    pub lines: Vec<ParsedInput>,
    /// Input bytes consumed up to the end of this batch.
    pub bytes_read: u64,
}

/// Why reading the input stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The reader failed after `lines` complete lines.
    #[error("{source}")]
    Io {
        lines: u64,
        #[source]
        source: io::Error,
    },
    /// The parsing thread could not be started.
    #[error("cannot start the parsing thread: {0}")]
    Spawn(#[source] io::Error),
    /// The parsing thread died (a bug: parsing does not panic).
    #[error("the parsing thread stopped unexpectedly")]
    ParserDied,
}

enum Message {
    Batch(Batch),
    Failed { lines: u64, error: io::Error },
}

/// Reads `reader` line by line (lines longer than `max_line_bytes` are
/// reported, not buffered), parses each line on a second thread and calls
/// `each` with every batch in order, on the calling thread (the batch is
/// dropped afterwards on the parsing thread). `each` returns
/// [`ControlFlow::Break`] to stop early (the parsing thread then stops
/// too). Returns when the input is exhausted or `each` stopped.
pub fn drive<R, F>(reader: R, max_line_bytes: usize, mut each: F) -> Result<(), ReadError>
where
    R: BufRead + Send,
    F: FnMut(&Batch) -> ControlFlow<()>,
{
    let (tx, rx) = mpsc::sync_channel::<Message>(BATCHES_IN_FLIGHT);
    // Batches handed back to be dropped: never more than are in flight
    // plus the one being looked at.
    let (back_tx, back_rx) = mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT + 2);
    std::thread::scope(|scope| {
        let parser = std::thread::Builder::new()
            .name("sec-audit-parse".into())
            .spawn_scoped(scope, move || {
                parse_into(reader, max_line_bytes, tx, back_rx)
            });
        let parser = match parser {
            Ok(p) => p,
            Err(e) => return Err(ReadError::Spawn(e)),
        };
        let mut outcome = Ok(());
        for message in rx.iter() {
            match message {
                Message::Batch(batch) => {
                    let flow = each(&batch);
                    // Dropped there when the parser takes it back; here when
                    // it has already finished (or the way back is full).
                    let _ = back_tx.try_send(batch);
                    if flow.is_break() {
                        break;
                    }
                }
                Message::Failed { lines, error } => {
                    outcome = Err(ReadError::Io {
                        lines,
                        source: error,
                    });
                    break;
                }
            }
        }
        // Dropping the receiver makes the parser's next send fail: it
        // stops at once instead of reading the rest of the input.
        drop(rx);
        match parser.join() {
            Ok(()) => outcome,
            Err(_) => Err(ReadError::ParserDied),
        }
    })
}

fn parse_into<R: BufRead>(
    reader: R,
    max_line_bytes: usize,
    tx: mpsc::SyncSender<Message>,
    back: mpsc::Receiver<Batch>,
) {
    let mut lines = LineReader::new(reader, max_line_bytes);
    let mut count: u64 = 0;
    loop {
        // Drop what the evaluating thread is done with.
        while let Ok(done) = back.try_recv() {
            drop(done);
        }
        let mut batch = Vec::with_capacity(BATCH_LINES);
        let mut failed = None;
        while batch.len() < BATCH_LINES {
            match lines.next_line() {
                Ok(Some(line)) => batch.push(ParsedInput::of(line)),
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        count += batch.len() as u64;
        let last = batch.len() < BATCH_LINES;
        if !batch.is_empty() {
            let message = Message::Batch(Batch {
                lines: batch,
                bytes_read: lines.bytes_read(),
            });
            if tx.send(message).is_err() {
                return;
            }
        }
        if let Some(error) = failed {
            let _ = tx.send(Message::Failed {
                lines: count,
                error,
            });
            return;
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize) -> Vec<String> {
        let mut out = Vec::new();
        drive(input, max, |b| {
            out.extend(b.lines.iter().map(|p| format!("{p:?}")));
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    #[test]
    fn batches_come_in_file_order_and_match_parsing_inline() {
        let mut input = String::new();
        for i in 0..(BATCH_LINES * 3 + 7) {
            if i % 5 == 0 {
                input.push_str("not json\n");
            } else {
                input.push_str(&format!(
                    "{{\"timestamp\": {i}, \"event_type\": \"x\", \"n\": {i}}}\n"
                ));
            }
        }
        let ahead = collect(input.as_bytes(), 1 << 20);
        let inline: Vec<String> = input
            .lines()
            .map(|l| {
                format!(
                    "{:?}",
                    ParsedInput::of(crate::lines::Line::Text(l.as_bytes()))
                )
            })
            .collect();
        assert_eq!(ahead.len(), BATCH_LINES * 3 + 7);
        assert_eq!(ahead, inline);
    }

    #[test]
    fn stopping_early_stops_the_parser() {
        // An endless input: the parser must stop when the consumer does.
        let endless = io::BufReader::new(io::repeat(b'\n'));
        let mut seen = 0;
        drive(endless, 1024, |b| {
            seen += b.lines.len();
            if seen > 10 * BATCH_LINES {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert!(seen > 10 * BATCH_LINES);
    }

    struct FailAfter(usize);
    impl io::Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            self.0 -= 1;
            let line = b"{\"timestamp\": 1, \"event_type\": \"x\"}\n";
            let n = line.len().min(buf.len());
            buf[..n].copy_from_slice(&line[..n]);
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_arrives_after_the_lines_before_it() {
        let mut got = 0;
        let err = drive(io::BufReader::new(FailAfter(300)), 1024, |b| {
            got += b.lines.len();
            ControlFlow::Continue(())
        })
        .unwrap_err();
        assert_eq!(got, 300);
        match err {
            ReadError::Io { lines, source } => {
                assert_eq!(lines, 300);
                assert_eq!(source.to_string(), "disk on fire");
            }
            other => panic!("{other:?}"),
        }
    }
}
