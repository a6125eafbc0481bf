//! Passwords taken out of a copy of a YAML file: the copies ldm keeps of
//! another writer's `containers.yaml` (`containers.yaml.edited-TIME`) are
//! in the project folder, which every container and a careless `git add`
//! read, and outlive the password they held (review-trust finding 6). The
//! copy keeps every byte but the value of each `password` key.

use std::borrow::Cow;

use serde_saphyr::granit_parser::{Event, Parser};

/// What a password's value becomes in a copy.
pub const REDACTED: &str = "'(removed from this copy)'";

/// `text` with the value of every `password:` key replaced by
/// [`REDACTED`]. Found by the YAML parser (any style, flow or block,
/// quoted or not); a text the parser refuses is redacted line by line
/// instead (the rest of each line after a `password` key).
pub fn passwords(text: &str) -> Cow<'_, str> {
    if !text.contains("password") {
        return Cow::Borrowed(text);
    }
    match spans(text) {
        Some(spans) => {
            let mut out = text.to_string();
            for (start, end) in spans.into_iter().rev() {
                out.replace_range(start..end, REDACTED);
            }
            Cow::Owned(out)
        }
        None => Cow::Owned(by_lines(text)),
    }
}

/// Where a mapping is in its key, value, key, value... order.
enum Frame {
    Map { key_next: bool, password: bool },
    Seq,
}

/// The byte ranges of the scalar values of `password` keys, in order;
/// `None` when the text does not parse.
fn spans(text: &str) -> Option<Vec<(usize, usize)>> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut out = Vec::new();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.ok()?;
        // A node at the level of the innermost collection: a key or a
        // value of a mapping, or an item of a sequence.
        let node = |stack: &mut Vec<Frame>, key: Option<&str>, out: &mut Vec<(usize, usize)>| {
            if let Some(Frame::Map { key_next, password }) = stack.last_mut() {
                if *key_next {
                    *password = key == Some("password");
                } else if *password {
                    if let (Some(_), Some(s), Some(e)) =
                        (key, span.start.byte_offset(), span.end.byte_offset())
                    {
                        // A block scalar's span runs on to the next
                        // line's indentation: keep that.
                        let e = s + text.get(s..e).map_or(0, |t| t.trim_end().len());
                        if e > s {
                            out.push((s, e));
                        }
                    }
                }
                *key_next = !*key_next;
            }
        };
        match event {
            Event::Scalar(value, ..) => node(&mut stack, Some(&value), &mut out),
            Event::Alias(_) => node(&mut stack, None, &mut out),
            Event::MappingStart(..) => {
                node(&mut stack, None, &mut out);
                stack.push(Frame::Map {
                    key_next: true,
                    password: false,
                });
            }
            Event::SequenceStart(..) => {
                node(&mut stack, None, &mut out);
                stack.push(Frame::Seq);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// The rest of every line after a `password` key, replaced.
fn by_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let end = line.trim_end_matches(['\n', '\r']);
        let colon = end.find("password").and_then(|i| {
            let after = i + "password".len();
            let rest = &end[after..];
            let gap = rest.len() - rest.trim_start_matches(['"', '\'', ' ']).len();
            rest[gap..].starts_with(':').then_some(after + gap)
        });
        match colon {
            Some(c) => {
                out.push_str(&end[..=c]);
                out.push(' ');
                out.push_str(REDACTED);
                out.push_str(&line[end.len()..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_password_value_goes_and_every_other_byte_stays() {
        let text = "# our team's setup\nproject: p # the name\ndefaults:\n  user: {name: ann, password: \"OLD-s3cret\"}\ncontainers:\n  dev:\n    image: img\n    user:\n      password: |\n        OLD-block\n    ports: [1, 2]\n  web:\n    user:\n      password: 'OLD-q'\n      name: password\n";
        let out = passwords(text);
        assert!(!out.contains("OLD-"), "{out}");
        assert!(
            out.contains("# our team's setup\nproject: p # the name\n"),
            "{out}"
        );
        assert!(out.contains("name: password\n"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
        let back: serde_json::Value = crate::from_str(&out).unwrap();
        assert_eq!(back["containers"]["dev"]["ports"][1], 2, "{out}");
        assert_eq!(passwords("a: 1\n"), "a: 1\n");
    }

    #[test]
    fn a_text_that_does_not_parse_is_redacted_line_by_line() {
        let out = passwords("user: {password: OLD-x\n  \"password\": OLD-y\n[");
        assert!(!out.contains("OLD-"), "{out}");
    }
}
