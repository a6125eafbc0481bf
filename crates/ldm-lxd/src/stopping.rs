//! Stopping a streamed command ([`super::Lxd::exec_lines`]): the signal its
//! `Stop` names, then SIGTERM, then SIGKILL, [`STOP_GRACE`] apart while it
//! has not ended; then ldm gives up waiting. SIGTERM comes second even
//! after a SIGTERM: setup steps' wrapper takes any second signal as "kill
//! the step's whole process group", which SIGKILL to it alone could not.

use std::time::Instant;

use super::{Stop, STOP_GRACE};

/// Where stopping one command has got to.
#[derive(Debug, Default)]
pub struct Stopping {
    sent: usize,
    at: Option<Instant>,
}

impl Stopping {
    /// The signal to send now, if any (asking `stop` until it names one);
    /// `Err` once SIGKILL's grace ran out too.
    pub fn due(&mut self, stop: Stop) -> Result<Option<i32>, ()> {
        let next = match (self.sent, self.at) {
            (0, _) => stop(),
            (_, Some(at)) if at.elapsed() < STOP_GRACE => None,
            (1, _) => Some(libc::SIGTERM),
            (2, _) => Some(libc::SIGKILL),
            _ => return Err(()),
        };
        if next.is_some() {
            self.sent += 1;
            self.at = Some(Instant::now());
        }
        Ok(next)
    }
}
