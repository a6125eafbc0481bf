//! Exec rules: what a command run through the double does (its output,
//! exit code, how long it runs, whether it reads its stdin to the end).

use std::time::Duration;

/// What a command does, for the commands a rule matches (first match
/// wins; without a match a command prints nothing and exits 0, except
/// `id -u "$1" && id -g "$1"`, which prints 1000 twice).
#[derive(Debug, Clone)]
pub struct ExecRule {
    /// Only in this instance.
    pub instance: Option<String>,
    /// Each must appear in some argument.
    pub contains: Vec<String>,
    /// The last argument, exactly.
    pub last: Option<String>,
    /// What it prints.
    pub stdout: Vec<u8>,
    /// What it prints on stderr.
    pub stderr: Vec<u8>,
    /// Its exit code.
    pub code: i32,
    /// How long it runs (a terminating signal ends it sooner, 128+N).
    pub runs: Duration,
    /// It runs until a signal (or its stdout's client going away) ends it.
    pub until_signal: bool,
    /// It reads its stdin to the end before exiting (default): a client
    /// that never closes stdin never sees it end.
    pub reads_stdin: bool,
    /// It prints its stdin (as `cat`).
    pub echo_stdin: bool,
    /// LXD cannot start it: the operation fails with this text and
    /// `return` -1.
    pub start_error: Option<String>,
}

impl Default for ExecRule {
    fn default() -> ExecRule {
        ExecRule {
            instance: None,
            contains: Vec::new(),
            last: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            code: 0,
            runs: Duration::ZERO,
            until_signal: false,
            reads_stdin: true,
            echo_stdin: false,
            start_error: None,
        }
    }
}

impl ExecRule {
    /// A rule for commands with an argument containing `text`.
    pub fn contains(text: &str) -> ExecRule {
        ExecRule {
            contains: vec![text.into()],
            ..ExecRule::default()
        }
    }

    /// And also containing `text`.
    pub fn and_contains(mut self, text: &str) -> ExecRule {
        self.contains.push(text.into());
        self
    }

    /// Only in instance `name`.
    pub fn instance(mut self, name: &str) -> ExecRule {
        self.instance = Some(name.into());
        self
    }

    /// Only when the last argument is `arg`.
    pub fn last(mut self, arg: &str) -> ExecRule {
        self.last = Some(arg.into());
        self
    }

    /// Prints `out`.
    pub fn stdout(mut self, out: &str) -> ExecRule {
        self.stdout = out.as_bytes().to_vec();
        self
    }

    /// Prints `err` on stderr.
    pub fn stderr(mut self, err: &str) -> ExecRule {
        self.stderr = err.as_bytes().to_vec();
        self
    }

    /// Exits `code`.
    pub fn code(mut self, code: i32) -> ExecRule {
        self.code = code;
        self
    }

    /// Runs for `t`.
    pub fn runs(mut self, t: Duration) -> ExecRule {
        self.runs = t;
        self
    }

    /// Runs until signalled.
    pub fn until_signal(mut self) -> ExecRule {
        self.until_signal = true;
        self
    }

    /// Does not read its stdin.
    pub fn ignores_stdin(mut self) -> ExecRule {
        self.reads_stdin = false;
        self
    }

    /// Prints its stdin.
    pub fn echo(mut self) -> ExecRule {
        self.echo_stdin = true;
        self
    }

    /// LXD fails to start it with `text`.
    pub fn start_error(mut self, text: &str) -> ExecRule {
        self.start_error = Some(text.into());
        self
    }

    pub(crate) fn matches(&self, instance: &str, argv: &[String]) -> bool {
        self.instance.as_deref().is_none_or(|i| i == instance)
            && self
                .last
                .as_deref()
                .is_none_or(|l| argv.last().is_some_and(|a| a == l))
            && self
                .contains
                .iter()
                .all(|c| argv.iter().any(|a| a.contains(c.as_str())))
    }
}
