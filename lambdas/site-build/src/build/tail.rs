//! The last lines of a build's output: what a failed build's record and
//! notification show.

use std::collections::VecDeque;

/// Lines kept by default.
pub const DEFAULT_TAIL_LINES: usize = 50;

/// A longer line is cut here: minified bundles and progress bars can put
/// megabytes on one line.
const MAX_LINE_BYTES: usize = 1000;

/// Combined stdout and stderr, split into lines as it arrives; keeps only
/// the last `keep` lines, each cut to a readable length, without terminal
/// colour codes.
#[derive(Debug)]
pub(crate) struct LogTail {
    keep: usize,
    lines: VecDeque<String>,
    /// The line still arriving.
    partial: Vec<u8>,
    partial_cut: bool,
}

impl LogTail {
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            keep,
            lines: VecDeque::with_capacity(keep.min(1024)),
            partial: Vec::new(),
            partial_cut: false,
        }
    }

    /// Output as it comes from the pipe, in chunks of any size.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.extend_partial(&rest[..end]);
            self.end_line();
            rest = &rest[end + 1..];
        }
        self.extend_partial(rest);
    }

    /// A line of our own, between the build's lines (which step starts,
    /// why it was killed).
    pub(crate) fn note(&mut self, line: impl Into<String>) {
        if !self.partial.is_empty() {
            self.end_line();
        }
        self.keep_line(line.into());
    }

    /// The kept lines, the unfinished last one included.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            lines.push(clean(&self.partial, self.partial_cut));
            if lines.len() > self.keep {
                lines.remove(0);
            }
        }
        lines
    }

    fn extend_partial(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.partial_cut = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        let line = clean(&self.partial, self.partial_cut);
        self.partial.clear();
        self.partial_cut = false;
        tracing::debug!(target: "site_build::build::output", "{line}");
        self.keep_line(line);
    }

    fn keep_line(&mut self, line: String) {
        if self.keep == 0 {
            return;
        }
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// One line as text: what follows the last carriage return (a progress
/// bar redraws itself with `\r`), without ANSI escape sequences, invalid
/// UTF-8 replaced, marked when it was cut.
fn clean(raw: &[u8], cut: bool) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let raw = match raw.iter().rposition(|&b| b == b'\r') {
        Some(at) => &raw[at + 1..],
        None => raw,
    };
    let mut text = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte != 0x1b {
            text.push(byte);
            continue;
        }
        // CSI: ESC [ parameters... final byte in @..~
        if bytes.peek() == Some(&b'[') {
            bytes.next();
            for b in bytes.by_ref() {
                if (0x40..=0x7e).contains(&b) {
                    break;
                }
            }
        }
    }
    let mut line = String::from_utf8_lossy(&text).into_owned();
    if cut {
        line.push_str(" [line cut]");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_lines_are_kept() {
        let mut tail = LogTail::new(3);
        for i in 1..=10 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        assert_eq!(tail.lines(), ["line 8", "line 9", "line 10"]);
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut tail = LogTail::new(10);
        tail.push(b"hel");
        tail.push(b"lo\nwor");
        tail.push(b"ld\r\nno newline at the end");
        assert_eq!(tail.lines(), ["hello", "world", "no newline at the end"]);
    }

    #[test]
    fn notes_go_between_the_output_lines() {
        let mut tail = LogTail::new(10);
        tail.push(b"half a line");
        tail.note("$ npm run build");
        tail.push(b"next\n");
        assert_eq!(tail.lines(), ["half a line", "$ npm run build", "next"]);
    }

    #[test]
    fn colours_progress_redraws_and_bad_utf8_are_cleaned() {
        let mut tail = LogTail::new(10);
        tail.push(b"\x1b[31merror\x1b[0m: boom\n");
        tail.push(b"10%\r50%\r100% done\n");
        tail.push(b"caf\xc3\xa9 \xff\n");
        assert_eq!(tail.lines(), ["error: boom", "100% done", "café \u{fffd}"]);
    }

    #[test]
    fn very_long_lines_are_cut() {
        let mut tail = LogTail::new(10);
        tail.push(&vec![b'x'; 5 * MAX_LINE_BYTES]);
        tail.push(&vec![b'x'; 5 * MAX_LINE_BYTES]);
        tail.push(b"\nshort\n");
        let lines = tail.lines();
        assert_eq!(lines[0].len(), MAX_LINE_BYTES + " [line cut]".len());
        assert!(lines[0].ends_with("[line cut]"));
        assert_eq!(lines[1], "short");
    }
}
