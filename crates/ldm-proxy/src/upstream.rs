//! The container's address, cached for [`super::REFRESH_AFTER`].
//!
//! Owns the one cache of the caller's [`Resolve`] answer so that a burst of
//! connections costs one lookup (an `lxc` call can take 100 ms), while a
//! container that restarted with a new address is followed within seconds,
//! or at once when a connect to the old address fails.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{lock, Event, Resolve, Shared, REFRESH_AFTER};

/// The resolver and its last answer.
pub(crate) struct Upstream {
    resolve: Resolve,
    /// Held during a lookup, so two connections never look up at once.
    cache: Mutex<Cache>,
}

struct Cache {
    addr: Option<IpAddr>,
    /// When `addr` was learnt; `None` before the first lookup.
    at: Option<Instant>,
}

impl Upstream {
    pub(crate) fn new(resolve: Resolve) -> Upstream {
        Upstream {
            resolve,
            cache: Mutex::new(Cache {
                addr: None,
                at: None,
            }),
        }
    }

    /// The address to connect to: the cached one if younger than
    /// [`REFRESH_AFTER`], else a fresh lookup.
    pub(crate) fn current(&self, shared: &Shared) -> Option<IpAddr> {
        let mut c = lock(&self.cache);
        match c.at {
            Some(at) if at.elapsed() < REFRESH_AFTER => c.addr,
            first => self.lookup(&mut c, first.is_some(), shared),
        }
    }

    /// After a failed connect to `failed`: a fresh lookup, unless another
    /// connection already got a different answer in the last moment.
    pub(crate) fn refresh(&self, failed: IpAddr, shared: &Shared) -> Option<IpAddr> {
        let mut c = lock(&self.cache);
        let recent =
            c.at.is_some_and(|at| at.elapsed() < Duration::from_millis(500));
        if recent && c.addr.is_some_and(|a| a != failed) {
            return c.addr;
        }
        self.lookup(&mut c, true, shared)
    }

    fn lookup(&self, c: &mut Cache, refresh: bool, shared: &Shared) -> Option<IpAddr> {
        let addr = (self.resolve)(refresh);
        if let Some(to) = addr.filter(|a| Some(*a) != c.addr) {
            shared.emit(Event::AddressChanged { from: c.addr, to });
        }
        c.addr = addr;
        c.at = Some(Instant::now());
        addr
    }
}
