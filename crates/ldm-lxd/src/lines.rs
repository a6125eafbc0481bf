//! Splitting a command's output into lines with a bound on what is kept:
//! a setup step may print one line of any length (a minified file, a
//! progress bar without newlines, `cat` of a binary), and ldm keeps at
//! most [`MAX_LINE`] bytes of each, whatever comes. What is cut is counted
//! and said at the end of the line, so the user knows there was more.

/// Bytes kept of one line; the rest of it is counted, not kept.
pub const MAX_LINE: usize = 16 * 1024;

/// Pieces of output a reader may have sent but the printer not yet taken.
pub const IN_FLIGHT: usize = 4;

/// One stream's partial line.
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
    cut: u64,
}

impl Lines {
    /// Takes `bytes`, handing each line they end to `line` (without its
    /// newline or a trailing `\r`).
    pub fn feed(&mut self, mut bytes: &[u8], line: &mut dyn FnMut(&str)) {
        while !bytes.is_empty() {
            let (part, ended) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], Some(i + 1)),
                None => (bytes, None),
            };
            self.keep(part);
            match ended {
                Some(n) => {
                    self.emit(line);
                    bytes = &bytes[n..];
                }
                None => break,
            }
        }
    }

    /// Hands the last line, if it did not end with a newline.
    pub fn finish(&mut self, line: &mut dyn FnMut(&str)) {
        if !self.buf.is_empty() || self.cut > 0 {
            self.emit(line);
        }
    }

    fn keep(&mut self, part: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.buf.len());
        let take = part.len().min(room);
        self.buf.extend_from_slice(&part[..take]);
        self.cut += (part.len() - take) as u64;
    }

    fn emit(&mut self, line: &mut dyn FnMut(&str)) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end_matches('\r');
        if self.cut > 0 {
            line(&format!(
                "{text} [... {} more bytes of this line not shown]",
                self.cut
            ));
        } else {
            line(text);
        }
        self.buf.clear();
        if self.buf.capacity() > 2 * MAX_LINE {
            self.buf.shrink_to(MAX_LINE);
        }
        self.cut = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        let mut l = Lines::default();
        for p in pieces {
            l.feed(p, &mut |s| out.push(s.to_string()));
        }
        l.finish(&mut |s| out.push(s.to_string()));
        out
    }

    #[test]
    fn lines_split_across_pieces_and_lose_their_cr() {
        assert_eq!(
            split(&[b"a\r\nb", b"c\n", b"\nd"]),
            ["a", "bc", "", "d"].map(String::from)
        );
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn a_long_line_keeps_its_start_and_counts_the_rest() {
        let long = vec![b'x'; MAX_LINE * 3 + 5];
        let out = split(&[&long[..10], &long[10..], b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert!(out[0].starts_with(&"x".repeat(MAX_LINE)));
        assert!(out[0].ends_with(&format!(
            " [... {} more bytes of this line not shown]",
            MAX_LINE * 2 + 5
        )));
        assert_eq!(out[1], "next");
    }
}
