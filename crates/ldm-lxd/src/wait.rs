//! What the backend tells a command while it waits out LXD's busy state
//! ([`OnWait`]; the waiting is `api/operations.rs`'s).
//!
//! A shared client (commands hold `Arc<dyn Lxd>`) needs no `Lxd` of its
//! own: its calls reach the client through `Arc`'s `Deref`, so a new trait
//! method is written in the trait and its implementations only.

/// Told once per instance, when ldm starts waiting for LXD on it: the
/// instance, and what LXD is doing to it when known ("Creating instance").
pub type OnWait = Box<dyn Fn(&str, Option<&str>) + Send + Sync>;
