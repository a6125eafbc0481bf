//! Progress of a long operation (an image download and unpack at launch, a
//! publish) from its metadata, on stderr, in the style of ldm's other
//! progress lines: `      unpacking the image: 45% (12.3 MB/s)`.
//!
//! LXD reports progress two ways: a structured `progress` object (`stage`,
//! `percent`, `processed`, `speed`; unpack and pack) and, for downloads,
//! only a line of its own (`download_progress: "rootfs: 23% (4.56MB/s)"`),
//! shown as LXD wrote it. On a terminal one line is rewritten in place and
//! cleared at the end; elsewhere (`--progress`) a line is printed when
//! what it says changes, at most every 2 seconds.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Shows one operation's progress.
pub struct Progress {
    terminal: bool,
    last: String,
    at: Option<Instant>,
    drawn: bool,
}

/// Between two lines on a non-terminal.
const EVERY: Duration = Duration::from_secs(2);

impl Progress {
    /// Progress on stderr; `terminal` rewrites one line in place.
    pub fn new(terminal: bool) -> Progress {
        Progress {
            terminal,
            last: String::new(),
            at: None,
            drawn: false,
        }
    }

    /// Shows what `metadata` says, if it says something new.
    pub fn show(&mut self, metadata: &Value) {
        let Some(line) = describe(metadata) else {
            return;
        };
        if line == self.last {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r      {}\x1b[K", plain(&line));
            self.drawn = true;
        } else {
            if self.at.is_some_and(|t| t.elapsed() < EVERY) {
                return;
            }
            let _ = writeln!(err, "      {}", plain(&line));
            self.at = Some(Instant::now());
        }
        let _ = err.flush();
        self.last = line;
    }

    /// Clears the line on a terminal.
    pub fn done(&mut self) {
        if self.terminal && self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drawn = false;
        }
    }
}

/// The line for an operation's metadata, if it reports progress.
pub fn describe(metadata: &Value) -> Option<String> {
    let p = &metadata["progress"];
    if let Some(stage) = p["stage"].as_str() {
        let what = match stage {
            "create_instance_from_image_unpack" => "unpacking the image",
            "create_image_from_container_pack" => "packing the image",
            "create_image_from_container_rootfs" => "copying the file system",
            other => other,
        };
        let num = |k: &str| {
            p[k].as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or_else(|| p[k].as_u64())
        };
        let speed = num("speed")
            .map(|s| format!(" ({}/s)", bytes(s)))
            .unwrap_or_default();
        return Some(match (num("percent"), num("processed")) {
            (Some(pc), _) => format!("{what}: {pc}%{speed}"),
            (None, Some(done)) => format!("{what}: {}{speed}", bytes(done)),
            (None, None) => format!("{what}{speed}"),
        });
    }
    // The download's own line (LXD 5.0 has no structured form of it).
    metadata
        .as_object()?
        .iter()
        .find(|(k, v)| k.ends_with("download_progress") && v.is_string())
        .and_then(|(_, v)| v.as_str())
        .map(|text| format!("downloading the image: {text}"))
}

/// `text` with control characters shown as `\u{..}`: the server's words
/// must not move the cursor or colour the terminal.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `12.3 MB`: decimal units, one decimal.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn structured_progress_is_a_percentage_and_a_speed() {
        let m = json!({"progress": {"stage": "create_instance_from_image_unpack", "percent": "45", "speed": "12345678"},
                       "create_instance_from_image_unpack_progress": "Unpack: 45% (12.35MB/s)"});
        assert_eq!(
            describe(&m).unwrap(),
            "unpacking the image: 45% (12.3 MB/s)"
        );
        let m = json!({"progress": {"stage": "create_image_from_container_pack", "processed": "2500000", "speed": "999"}});
        assert_eq!(describe(&m).unwrap(), "packing the image: 2.5 MB (999 B/s)");
    }

    #[test]
    fn a_download_shows_lxd_s_line_and_nothing_else_shows_nothing() {
        let m = json!({"download_progress": "rootfs: 23% (4.56MB/s)"});
        assert_eq!(
            describe(&m).unwrap(),
            "downloading the image: rootfs: 23% (4.56MB/s)"
        );
        assert!(describe(&json!({"container_progress": ""})).is_none());
        assert!(describe(&Value::Null).is_none());
    }
}
