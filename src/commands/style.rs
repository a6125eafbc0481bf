//! Colour for human output: on a terminal only, never with `NO_COLOR`
//! (<https://no-color.org>), `--color always|never` to override.

use std::io::IsTerminal;

use clap::ColorChoice;

/// ANSI colours ldm uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    /// Healthy, running.
    Green,
    /// Stopped, warnings.
    Yellow,
    /// Missing, interrupted, damage.
    Red,
    /// In progress.
    Cyan,
}

/// Whether and how to colour stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Decides for stdout from `--color` and the environment.
    pub fn for_stdout(choice: ColorChoice) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Style {
            on: match choice {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => !no_color && !dumb && std::io::stdout().is_terminal(),
            },
        }
    }

    /// No colour at all.
    pub fn plain() -> Style {
        Style { on: false }
    }

    /// `text` in `color`, or as is when colour is off.
    pub fn paint(&self, text: &str, color: Option<Color>) -> String {
        match (self.on, color) {
            (true, Some(c)) => {
                let code = match c {
                    Color::Green => 32,
                    Color::Yellow => 33,
                    Color::Red => 31,
                    Color::Cyan => 36,
                };
                format!("\x1b[{code}m{text}\x1b[0m")
            }
            _ => text.to_string(),
        }
    }
}

/// The colour of a status word in `list` and friends.
pub fn status_color(status: &str) -> Option<Color> {
    if status.contains("interrupted") || status == "NOT FOUND" {
        Some(Color::Red)
    } else if status.contains("(pid") {
        Some(Color::Cyan)
    } else if status == "RUNNING" {
        Some(Color::Green)
    } else if status == "STOPPED" {
        Some(Color::Yellow)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_style_never_emits_escapes() {
        assert_eq!(
            Style::plain().paint("RUNNING", Some(Color::Green)),
            "RUNNING"
        );
        let on = Style { on: true };
        assert_eq!(on.paint("x", Some(Color::Red)), "\x1b[31mx\x1b[0m");
    }
}
