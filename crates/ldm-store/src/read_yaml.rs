//! Reading `containers.yaml` for a load: through a derived file whose
//! stamp vouches for it, else by its bytes' key, else by parsing them
//! (DESIGN.md, "The base and the load cache").

use super::cache::{self, Key, Stamp};
use super::error::StoreError;
use super::fs::Fs;
use super::recover::{not_found_or_io, within, YAML_MAX_BYTES};
use super::snapshot::{self, Doc, Mark};
use super::Paths;

/// `containers.yaml` as read: which file, its key, the base, and its parsed
/// form (from the base or the cache when they hold these bytes).
pub(super) struct YamlRead {
    pub(super) stamp: Stamp,
    pub(super) seen_ns: i128,
    pub(super) key: Key,
    /// The base, when it is not these bytes (so a merge may need it), its
    /// body not decoded yet.
    pub(super) base: Option<cache::Stored>,
    /// The base's mark, `None` without a base.
    pub(super) base_mark: Option<Option<Mark>>,
    pub(super) base_matches: bool,
    pub(super) doc: Doc,
    pub(super) parsed: bool,
    pub(super) cache_due: bool,
    pub(super) extras: Option<Vec<u8>>,
}

/// Reads what the state starts from. A derived file whose stamp vouches for
/// the YAML (same file, same times, not racy: `cache::Stored::vouches`)
/// stands for its bytes unread; else the bytes are read and hashed, and
/// the base or the cache used if its key is theirs; else they are parsed.
/// Only the derived file used is decoded. So a read of a project ldm folded
/// costs a `stat` and a decode of one derived file, whatever the YAML's
/// size (DESIGN.md, "The base and the load cache").
pub(super) fn read_yaml(fs: &dyn Fs, paths: &Paths) -> Result<YamlRead, StoreError> {
    let seen_ns = fs.now_ns();
    let id = fs
        .stat(&paths.yaml)
        .map_err(|e| not_found_or_io(e, paths))?;
    within(&paths.yaml, id.len, YAML_MAX_BYTES)?;
    let stamp = Stamp::of(fs, id);
    let base_path = paths.base();
    let cache_path = paths.cache();
    // The base's head only: lineage needs its key and mark, and its body
    // is read only if it is the one used.
    let base = base_path.as_ref().and_then(|p| cache::read_head(fs, p));
    let vouched_base = base.as_ref().is_some_and(|b| b.vouches(&stamp));
    let cache = match vouched_base {
        true => None,
        false => cache_path.as_ref().and_then(|p| cache::read(fs, p)),
    };
    let vouched_cache = cache.as_ref().is_some_and(|c| c.vouches(&stamp));
    let mut bytes = None;
    let key = if vouched_base {
        base.as_ref().map(|b| b.key)
    } else if vouched_cache {
        cache.as_ref().map(|c| c.key)
    } else {
        None
    };
    let key = match key {
        Some(k) => k,
        None => {
            let b = fs
                .read(&paths.yaml)
                .map_err(|e| not_found_or_io(e, paths))?;
            let k = Key::of(&b);
            bytes = Some(b);
            k
        }
    };
    let base_mark = base.as_ref().map(|b| b.mark);
    let mut base_matches = base.as_ref().is_some_and(|b| b.key == key);
    let mut base = base;
    let mut cache = cache;
    let mut from_stored = |c: cache::Stored| {
        let (extras, ours) = (c.extras, c.ours);
        let path = cache_path.as_deref()?;
        c.decode(fs, path).map(|doc| (doc, extras, ours))
    };
    // The cache vouched: it is these bytes, read already.
    let from_cache = match vouched_cache {
        true => cache.take().and_then(&mut from_stored),
        false => None,
    };
    // Else the base, if it is these very bytes (moved: a base that matches
    // the YAML is never needed for a merge).
    let from_base = match (from_cache.is_none() && base_matches, base.take()) {
        (true, Some(b)) => {
            let (extras, ours) = (b.extras, b.ours);
            match base_path.as_deref().and_then(|p| b.decode(fs, p)) {
                Some(doc) => Some((doc, extras, ours)),
                None => {
                    // Its body did not read back: no base.
                    base_matches = false;
                    None
                }
            }
        }
        (_, b) => {
            base = b;
            None
        }
    };
    // Else the cache, if its key is these bytes'.
    let from_cache = from_cache.or_else(|| match (from_base.is_none(), cache) {
        (true, Some(c)) if c.key == key => from_stored(c),
        _ => None,
    });
    let mut checked = false;
    let (doc, parsed, extras) = match from_base.or(from_cache) {
        Some((doc, extras, ours)) => {
            checked = ours;
            (doc, false, extras)
        }
        None => {
            if bytes.is_none() {
                bytes = Some(
                    fs.read(&paths.yaml)
                        .map_err(|e| not_found_or_io(e, paths))?,
                );
            }
            let b = bytes.as_deref().unwrap_or_default();
            let doc = snapshot::parse_yaml(paths, b)?;
            let extras = !doc.unknown.is_empty() || snapshot::has_own_comments(b);
            (doc, true, extras)
        }
    };
    if !parsed && !checked {
        // Made from these very bytes, by an ldm whose rules may differ.
        snapshot::validated(paths, &doc.project)?;
    }
    // A writer keeps the bytes of a YAML a rewrite would lose things of.
    let extras = match (extras, bytes) {
        (false, _) => None,
        (true, Some(b)) => Some(b),
        (true, None) => Some(
            fs.read(&paths.yaml)
                .map_err(|e| not_found_or_io(e, paths))?,
        ),
    };
    Ok(YamlRead {
        stamp,
        seen_ns,
        key,
        base,
        base_mark,
        base_matches,
        doc,
        parsed,
        cache_due: !vouched_base && !vouched_cache,
        extras,
    })
}
