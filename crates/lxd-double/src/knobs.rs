//! Knobs a test sets at any time: which requests are slow, fail or hang,
//! selected by method and path ([`Match`]), counted per knob.

use std::time::Duration;

/// Which requests a knob applies to: a method (`*` for any) and a path
/// pattern over the raw path without its query, where `*` stands for any
/// characters but `/` and `**` for any characters at all; optionally only
/// the n-th matching request, or the first n.
#[derive(Debug, Clone)]
pub struct Match {
    method: String,
    path: String,
    only: Only,
}

#[derive(Debug, Clone, Copy)]
enum Only {
    Every,
    Nth(u32),
    First(u32),
}

impl Match {
    /// Requests with `method` (`*`: any) whose path matches `path`
    /// (`/1.0/instances/*`, `/1.0/instances/*/snapshots/**`).
    pub fn new(method: &str, path: &str) -> Match {
        Match {
            method: method.to_ascii_uppercase(),
            path: path.into(),
            only: Only::Every,
        }
    }

    /// Only the `n`-th matching request (counted from 1).
    pub fn nth(mut self, n: u32) -> Match {
        self.only = Only::Nth(n);
        self
    }

    /// Only the first `n` matching requests.
    pub fn first(mut self, n: u32) -> Match {
        self.only = Only::First(n);
        self
    }

    /// Does a request of `method` on `path` (no query) match, leaving the
    /// count aside?
    pub fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method == method) && glob(self.path.as_bytes(), path.as_bytes())
    }

    /// Is the `count`-th matching request (from 1) selected?
    fn selects(&self, count: u32) -> bool {
        match self.only {
            Only::Every => true,
            Only::Nth(n) => count == n,
            Only::First(n) => count <= n,
        }
    }
}

/// `*` matches within a segment, `**` across segments.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) if rest.first() == Some(&b'*') => {
            let rest = &rest[1..];
            (0..=s.len()).any(|i| glob(rest, &s[i..]))
        }
        Some((b'*', rest)) => {
            let seg = s.iter().position(|&c| c == b'/').unwrap_or(s.len());
            (0..=seg).any(|i| glob(rest, &s[i..]))
        }
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// Where a hang holds a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangAt {
    /// Before the request has any effect: no answer until released.
    Request,
    /// After its effect (an async request's operation is created and runs
    /// on its own), before the answer is sent.
    Response,
    /// The operation the request creates stays Running, without effect,
    /// until released (the request itself is answered at once).
    Operation,
}

/// What a knob does to the requests it selects.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    /// A sync request is answered this much later; an async request's
    /// operation takes this long.
    Slow(Duration),
    /// The request fails at once with this HTTP status and LXD text,
    /// without effect.
    Fail(u16, String),
    /// The request's operation fails (status 400, `err`), without effect.
    FailOperation(String),
    /// The request hangs here until released.
    Hang(HangAt),
}

#[derive(Debug)]
struct Knob {
    when: Match,
    effect: Effect,
    seen: u32,
}

/// The knobs in force, in the order set.
#[derive(Debug, Default)]
pub(crate) struct Knobs {
    knobs: Vec<Knob>,
}

/// What the knobs decided for one request.
#[derive(Debug, Default, Clone)]
pub(crate) struct Decision {
    pub slow: Option<Duration>,
    pub fail: Option<(u16, String)>,
    pub fail_operation: Option<String>,
    pub hang: Vec<HangAt>,
}

impl Knobs {
    /// Adds a knob.
    pub fn add(&mut self, when: Match, effect: Effect) {
        self.knobs.push(Knob {
            when,
            effect,
            seen: 0,
        });
    }

    /// Removes every knob.
    pub fn clear(&mut self) {
        self.knobs.clear();
    }

    /// Counts the request against every knob matching it and says what
    /// the selected ones do (the first of each kind wins).
    pub fn decide(&mut self, method: &str, path: &str) -> Decision {
        let mut d = Decision::default();
        for k in &mut self.knobs {
            if !k.when.matches(method, path) {
                continue;
            }
            k.seen += 1;
            if !k.when.selects(k.seen) {
                continue;
            }
            match &k.effect {
                Effect::Slow(t) => {
                    d.slow.get_or_insert(*t);
                }
                Effect::Fail(s, t) => {
                    d.fail.get_or_insert((*s, t.clone()));
                }
                Effect::FailOperation(t) => {
                    d.fail_operation.get_or_insert(t.clone());
                }
                Effect::Hang(at) => d.hang.push(*at),
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_segments_and_subtrees() {
        let m = Match::new("delete", "/1.0/instances/*");
        assert!(m.matches("DELETE", "/1.0/instances/p-a"));
        assert!(!m.matches("DELETE", "/1.0/instances/p-a/snapshots/s"));
        assert!(!m.matches("GET", "/1.0/instances/p-a"));
        let any = Match::new("*", "/1.0/instances/**");
        assert!(any.matches("GET", "/1.0/instances/p-a/snapshots/s"));
        assert!(
            Match::new("GET", "/1.0/instances/*/state").matches("GET", "/1.0/instances/x/state")
        );
        assert!(!Match::new("GET", "/1.0").matches("GET", "/1.0/instances"));
    }

    #[test]
    fn counts_are_per_knob() {
        let mut k = Knobs::default();
        k.add(
            Match::new("PUT", "/1.0/instances/*/state").nth(2),
            Effect::Slow(Duration::from_secs(1)),
        );
        k.add(
            Match::new("PUT", "**").first(1),
            Effect::Fail(500, "no".into()),
        );
        let a = k.decide("PUT", "/1.0/instances/a/state");
        assert!(a.slow.is_none() && a.fail.is_some());
        let b = k.decide("PUT", "/1.0/instances/a/state");
        assert!(b.slow.is_some() && b.fail.is_none());
        let c = k.decide("PUT", "/1.0/instances/a/state");
        assert!(c.slow.is_none() && c.fail.is_none());
    }
}
