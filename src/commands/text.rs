//! Values from files on a terminal: a snapshot description, an image name
//! or a user name from a teammate's `containers.yaml` may hold terminal
//! control sequences (`\x1b[2J` clears the screen, `\r` overwrites a line,
//! U+202E reverses what follows). Human output shows them escaped, so what
//! a person reads is what the file holds; `--json` keeps every value exact
//! (serde_json escapes control characters itself).
//!
//! Tables, `doctor`'s report and error messages are always escaped, on a
//! terminal or not: a table saved to a file is read on a terminal later.
//! `config get` prints a bare value, which scripts read
//! (`$(ldm config get KEY)`): it is escaped only on a terminal.

/// `s` with every control character written as an escape: `\n`, `\r`,
/// `\t`, `\x1b`, and `\u{..}` for the C1 controls and Unicode's
/// direction overrides. For one-line values (table cells, names).
pub fn escape(s: &str) -> String {
    escape_with(s, false)
}

/// Like [`escape`] but keeping line breaks, for messages of several lines
/// (a report, a container's stderr). Every line after the first that does
/// not start with a space is indented by two: a message's own further
/// lines are indented already, and a line break in a value quoted by the
/// message (a key from a cloned file) then cannot start a line that reads
/// as ldm's own (`ldm: ...`, `error: ...`). Values known to be one line
/// are escaped with [`escape`] where they are quoted.
pub fn escape_lines(s: &str) -> String {
    let escaped = escape_with(s, true);
    if !escaped.contains('\n') {
        return escaped;
    }
    let mut out = String::with_capacity(escaped.len() + 8);
    for (i, line) in escaped.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() && !line.starts_with(' ') {
                out.push_str("  ");
            }
        }
        out.push_str(line);
    }
    out
}

fn escape_with(s: &str, keep_newlines: bool) -> String {
    if !s.chars().any(|c| needs_escape(c, keep_newlines)) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs_escape(c, keep_newlines) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    out
}

/// Control characters (C0, DEL, C1) and the bidirectional overrides and
/// isolates, which reorder what a terminal shows.
fn needs_escape(c: char, keep_newlines: bool) -> bool {
    if keep_newlines && c == '\n' {
        return false;
    }
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped_and_the_rest_as_is() {
        assert_eq!(escape("plain ü – ok"), "plain ü – ok");
        assert_eq!(escape("a\x1b[2Jb\rc"), "a\\x1b[2Jb\\rc");
        assert_eq!(escape("tab\there\nline\x7f"), "tab\\there\\nline\\x7f");
        assert_eq!(escape("\u{9b}31m \u{202e}txt"), "\\u{9b}31m \\u{202e}txt");
        assert_eq!(escape_lines("one\ntwo\x1b"), "one\n  two\\x1b");
        assert_eq!(
            escape_lines("head:\n  - item\nldm: forged"),
            "head:\n  - item\n  ldm: forged"
        );
    }
}
