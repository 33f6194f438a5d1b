//! A guest's log text as it reaches `tracing`: escaped and capped.
//!
//! A guest's `log` message and its WASI stdout/stderr are untrusted text
//! that ends up in the host's log. Raw control characters would let a guest
//! forge log lines (a `\n` followed by a fake record) or colour a terminal,
//! so every control character except tab is written as an escape (`\n`,
//! `\r`, `\u{1b}`...), and a message is cut at [`LOG_LINE_LIMIT`] bytes of
//! guest text with a note saying how much was left out. Invalid UTF-8 shows
//! as U+FFFD.

use std::fmt::Write;

/// The most bytes of one guest message that reach the log: 16 KiB. Longer
/// messages end with `… [N more bytes]`; the guest is told they were
/// written whole.
pub(crate) const LOG_LINE_LIMIT: usize = 16 * 1024;

/// A guest message of `total` bytes, of which `bytes` is the start (at
/// least [`LOG_LINE_LIMIT`] bytes of it, when there are that many), as one
/// log line: control characters escaped, trailing newlines dropped, cut at
/// the limit with a note of what was left out.
pub(crate) fn log_line(bytes: &[u8], total: usize) -> String {
    let kept = &bytes[..bytes.len().min(LOG_LINE_LIMIT)];
    let dropped = total.saturating_sub(kept.len());
    let mut kept = kept;
    if dropped == 0 {
        while let [rest @ .., b'\n' | b'\r'] = kept {
            kept = rest;
        }
    }
    let text = String::from_utf8_lossy(kept);
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => line.push(c),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{{{:x}}}", c as u32);
            }
            c => line.push(c),
        }
    }
    if dropped > 0 {
        let _ = write!(line, "… [{dropped} more bytes]");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let raw = b"a\nb\rc\x1b[31md\x00\te\n\n";
        assert_eq!(log_line(raw, raw.len()), "a\\nb\\rc\\u{1b}[31md\\u{0}\te");
        assert_eq!(log_line("caf\u{e9} \u{85}".as_bytes(), 8), "caf\u{e9} \\u{85}");
        assert_eq!(log_line(b"\xff", 1), "\u{fffd}");
    }

    #[test]
    fn long_lines_are_cut_with_a_note() {
        let line = log_line(&vec![b'x'; LOG_LINE_LIMIT + 10], LOG_LINE_LIMIT + 10);
        assert!(line.ends_with("… [10 more bytes]"), "{}", &line[line.len() - 40..]);
        assert_eq!(line.len(), LOG_LINE_LIMIT + "… [10 more bytes]".len());
        // Only the start was read out of the guest.
        assert!(log_line(b"abc", 1 << 30).ends_with(&format!("… [{} more bytes]", (1 << 30) - 3)));
    }
}
