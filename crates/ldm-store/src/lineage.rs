//! Whose `containers.yaml` this is: the one rule that ties the YAML to the
//! log (DESIGN.md, "Lineage"). Everything that loads, inspects or repairs the
//! store asks [`classify`]; nothing else compares marks, log identities or
//! generations.

use super::record::Header;
use super::snapshot::{Doc, Mark, Written};
use ldm_model::merge::Writer;

/// What a log file says about itself, for [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogInfo {
    /// Its header.
    pub header: Header,
    /// Sequence number before its first record.
    pub prev_seq: u64,
    /// Sequence number of its last complete record (`prev_seq` if none).
    pub last_seq: u64,
}

/// Where the state comes from, given the YAML, the base and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// No log: the YAML is the whole state. A writer starts a log.
    NoLog,
    /// The YAML is ldm's own fold of this log up to `seq`: the state is the
    /// YAML plus the records after `seq`. `base_stale`: the base file does
    /// not describe it (a fold died between its two renames); a writer
    /// rewrites the base.
    Ours {
        /// Last record folded into the YAML.
        seq: u64,
        /// The base file must be rewritten.
        base_stale: bool,
    },
    /// A version 1 pair (before log identities): the YAML plus the records
    /// after `seq`, or, when `log_folded`, the YAML alone (a compaction died
    /// after renaming the YAML in). A writer upgrades it to the version this
    /// build writes (a new identity). Logs of version 2 and later are never
    /// `Legacy`: they carry the identity the YAML names, and the same rules
    /// apply to every one of them (a writer upgrades a version 2 log all the
    /// same, keeping its identity).
    Legacy {
        /// Last record in the YAML.
        seq: u64,
        /// The log is entirely in the YAML already.
        log_folded: bool,
    },
    /// Another writer made the YAML (or it was never folded from this log):
    /// merge it with the base, ldm's last fold, when the base is usable
    /// (`base_seq`), else the file wins and ldm's changes it overrides are
    /// listed and kept beside the log.
    Foreign {
        /// Sequence number the base stands at, if the base is usable.
        base_seq: Option<u64>,
        /// How the other writer treats keys it does not know.
        writer: Writer,
    },
}

impl Origin {
    /// True when a writer must fold before it appends anything: so that its
    /// records come after whatever the other writer did.
    pub fn needs_fold(&self) -> bool {
        !matches!(self, Origin::Ours { .. })
    }
}

/// A file laid out as lxc-dev-manager writes it, without the mark, was
/// rewritten by that tool, which drops the keys it does not know: what it
/// lacks of ldm's keys is not a change. Any other file was written by a
/// person or a program that keeps keys, with or without the mark: a key it
/// lacks was deleted (issue 25, item 6: deleting `remote:` together with the
/// `ldm:` line was silently undone).
fn writer_of(yaml: &Doc) -> Writer {
    match yaml.written {
        Written::NoMark => Writer::KeyDropping,
        _ => Writer::KeepsKeys,
    }
}

/// The rule. `yaml` is the YAML as found; `base` the mark of what ldm
/// last folded (if there is a base), and `base_matches` whether it was
/// folded into these very bytes; `log` the log's header and seq range.
pub fn classify(
    yaml: &Doc,
    base_matches: bool,
    base: Option<Option<Mark>>,
    log: Option<&LogInfo>,
) -> Origin {
    let Some(log) = log else {
        return Origin::NoLog;
    };
    let seq_of = |m: Option<Mark>| m.map(|m| m.seq);
    if log.header.version == 1 {
        // Version 1: the log's generation says which YAML it continues.
        return match yaml.mark {
            Some(m)
                if m.log.is_none()
                    && m.generation == log.header.generation
                    && m.seq == log.prev_seq =>
            {
                Origin::Legacy {
                    seq: m.seq,
                    log_folded: false,
                }
            }
            // A compaction (or an upgrade from version 1) put every record of
            // the log into the YAML, then died before replacing the log.
            Some(m)
                if m.seq == log.last_seq
                    && (log.header.generation.checked_add(1) == Some(m.generation)
                        || yaml.written == Written::ByLdm) =>
            {
                Origin::Legacy {
                    seq: m.seq,
                    log_folded: true,
                }
            }
            _ => Origin::Foreign {
                base_seq: None,
                writer: writer_of(yaml),
            },
        };
    }
    // The log holds every record after the base, so the base is usable.
    let usable = |m: &Option<Mark>| match m {
        Some(m) => {
            m.log.is_some()
                && m.log == log.header.id
                && (log.prev_seq..=log.last_seq).contains(&m.seq)
        }
        None => false,
    };
    let base_seq = base.filter(|m| usable(m)).and_then(seq_of);
    if let (true, Some(seq)) = (base_matches, base_seq) {
        return Origin::Ours {
            seq,
            base_stale: false,
        };
    }
    // The YAML says it is ldm's own fold of this log, and no base says a
    // later fold happened (a copy of an older fold put back by hand is
    // another writer's doing).
    if yaml.written == Written::ByLdm && usable(&yaml.mark) {
        let seq = seq_of(yaml.mark).unwrap_or_default();
        if base_seq.is_none_or(|b| b < seq) {
            return Origin::Ours {
                seq,
                base_stale: true,
            };
        }
    }
    Origin::Foreign {
        base_seq,
        writer: writer_of(yaml),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::LOG_ID_LEN;
    use ldm_model::Project;

    const A: [u8; LOG_ID_LEN] = [1; LOG_ID_LEN];
    const B: [u8; LOG_ID_LEN] = [2; LOG_ID_LEN];

    fn doc(mark: Option<(u64, Option<[u8; LOG_ID_LEN]>)>, written: Written) -> Doc {
        Doc {
            project: Project::new("p", vec![]),
            mark: mark.map(|(seq, log)| Mark {
                generation: 1,
                seq,
                log,
            }),
            written,
            unknown: vec![],
        }
    }

    fn log(id: [u8; LOG_ID_LEN], prev: u64, last: u64) -> LogInfo {
        LogInfo {
            header: Header {
                version: crate::record::VERSION,
                generation: 1,
                id: Some(id),
                prev_seq: Some(prev),
            },
            prev_seq: prev,
            last_seq: last,
        }
    }

    #[test]
    fn the_base_matching_the_bytes_makes_the_yaml_ours() {
        let y = doc(Some((5, Some(A))), Written::ByLdm);
        let base = y.clone();
        assert_eq!(
            classify(&y, true, Some(base.mark), Some(&log(A, 0, 7))),
            Origin::Ours {
                seq: 5,
                base_stale: false
            }
        );
    }

    #[test]
    fn a_teammates_yaml_from_another_log_is_foreign_not_a_dead_compaction() {
        // Self-consistent and one step ahead, but folded from log B.
        let y = doc(Some((8, Some(B))), Written::ByLdm);
        let base = doc(Some((5, Some(A))), Written::ByLdm);
        assert_eq!(
            classify(&y, false, Some(base.mark), Some(&log(A, 0, 7))),
            Origin::Foreign {
                base_seq: Some(5),
                writer: Writer::KeepsKeys
            }
        );
    }

    #[test]
    fn an_older_fold_put_back_is_foreign_a_newer_one_is_ours() {
        let base = doc(Some((5, Some(A))), Written::ByLdm);
        let older = doc(Some((3, Some(A))), Written::ByLdm);
        assert!(matches!(
            classify(&older, false, Some(base.mark), Some(&log(A, 0, 7))),
            Origin::Foreign {
                base_seq: Some(5),
                ..
            }
        ));
        let newer = doc(Some((6, Some(A))), Written::ByLdm);
        assert_eq!(
            classify(&newer, false, Some(base.mark), Some(&log(A, 0, 7))),
            Origin::Ours {
                seq: 6,
                base_stale: true
            }
        );
    }

    #[test]
    fn the_go_tools_file_is_foreign_and_drops_keys() {
        let base = doc(Some((5, Some(A))), Written::ByLdm);
        let go = doc(None, Written::NoMark);
        assert_eq!(
            classify(&go, false, Some(base.mark), Some(&log(A, 0, 7))),
            Origin::Foreign {
                base_seq: Some(5),
                writer: Writer::KeyDropping
            }
        );
        // A base the log no longer covers (older than its first record) is unusable.
        assert!(matches!(
            classify(&go, false, Some(base.mark), Some(&log(A, 6, 7))),
            Origin::Foreign { base_seq: None, .. }
        ));
    }

    #[test]
    fn a_version_2_log_follows_the_same_rules_as_version_3() {
        let y = doc(Some((5, Some(A))), Written::ByLdm);
        let base = y.clone();
        for version in [2, 3] {
            let mut l = log(A, 0, 7);
            l.header.version = version;
            assert_eq!(
                classify(&y, true, Some(base.mark), Some(&l)),
                Origin::Ours {
                    seq: 5,
                    base_stale: false
                },
                "version {version}"
            );
        }
    }

    #[test]
    fn only_ldms_own_fold_needs_no_fold_before_a_commit() {
        let ours = Origin::Ours {
            seq: 1,
            base_stale: true,
        };
        assert!(!ours.needs_fold());
        for o in [
            Origin::NoLog,
            Origin::Legacy {
                seq: 1,
                log_folded: false,
            },
            Origin::Foreign {
                base_seq: None,
                writer: Writer::KeepsKeys,
            },
        ] {
            assert!(o.needs_fold(), "{o:?}");
        }
    }

    /// A YAML of ldm's own at the base's very seq, but not the base's
    /// bytes, is not newer than the base: another writer's, merged.
    #[test]
    fn a_fold_at_the_bases_seq_that_is_not_the_base_is_foreign() {
        let base = doc(Some((5, Some(A))), Written::ByLdm);
        let same_seq = doc(Some((5, Some(A))), Written::ByLdm);
        assert!(matches!(
            classify(&same_seq, false, Some(base.mark), Some(&log(A, 0, 7))),
            Origin::Foreign {
                base_seq: Some(5),
                ..
            }
        ));
    }

    #[test]
    fn version_one_pairs_follow_the_generation_rule() {
        let v1 = |generation: u64, last: u64| LogInfo {
            header: Header {
                version: 1,
                generation,
                id: None,
                prev_seq: None,
            },
            prev_seq: 4,
            last_seq: last,
        };
        let y = doc(Some((4, None)), Written::Unchecked);
        assert_eq!(
            classify(&y, false, None, Some(&v1(1, 6))),
            Origin::Legacy {
                seq: 4,
                log_folded: false
            }
        );
        let mut ahead = y.clone();
        ahead.mark = Some(Mark {
            generation: 2,
            seq: 6,
            log: None,
        });
        assert_eq!(
            classify(&ahead, false, None, Some(&v1(1, 6))),
            Origin::Legacy {
                seq: 6,
                log_folded: true
            }
        );
        // One generation ahead but not holding the log's records: not ours.
        ahead.mark = Some(Mark {
            generation: 2,
            seq: 9,
            log: None,
        });
        assert!(matches!(
            classify(&ahead, false, None, Some(&v1(1, 6))),
            Origin::Foreign { base_seq: None, .. }
        ));
        // The same generation but another seq: not this log's YAML.
        let mut other = y.clone();
        other.mark = Some(Mark {
            generation: 1,
            seq: 3,
            log: None,
        });
        assert!(matches!(
            classify(&other, false, None, Some(&v1(1, 6))),
            Origin::Foreign { base_seq: None, .. }
        ));
        // Holding every record, not a generation ahead: ldm's own fold (its
        // checksum holds) is the log folded; a file that cannot say so is not.
        let mut folded = y.clone();
        folded.mark = Some(Mark {
            generation: 1,
            seq: 6,
            log: None,
        });
        folded.written = Written::ByLdm;
        assert_eq!(
            classify(&folded, false, None, Some(&v1(1, 6))),
            Origin::Legacy {
                seq: 6,
                log_folded: true
            }
        );
        folded.written = Written::Unchecked;
        assert!(matches!(
            classify(&folded, false, None, Some(&v1(1, 6))),
            Origin::Foreign { base_seq: None, .. }
        ));
    }
}
