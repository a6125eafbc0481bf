//! Which YAML crate for `containers.yaml`: the candidates side by side in one
//! run (DESIGN.md, "Choosing the YAML crate").
//!
//! `cargo bench --manifest-path benches/yaml-bakeoff/Cargo.toml` (a package
//! outside ldm's workspace, so the candidates stay out of ldm's lockfile).
//! A plain harness (no criterion), three tables:
//!
//! 1. Speed: parse (plain, and with unknown-key tracking as the store does)
//!    and emit of a `containers.yaml` with 10,000 snapshots, ldm's own model
//!    and document shape. Every iteration runs every candidate, in an order
//!    that rotates, so that noise from other work on the machine hits all
//!    alike; medians, and the median of per-iteration ratios to
//!    serde_yaml_ng (what ldm used before).
//! 2. Bombs: each input is parsed in a child process (this binary run again
//!    with `child CANDIDATE CASE`) under RLIMIT_AS 2 GiB and RLIMIT_CPU 20 s,
//!    so that a runaway candidate fails alone; CPU time and peak RSS come
//!    from `wait4`. A parse that succeeds reports the size of its JSON (what
//!    the load cache would hold).
//! 3. Fidelity: a project whose strings are the ones YAML readers disagree
//!    on (`yes`, `~`, `0123`, timestamps, `: `, `#`, quotes, newlines, ...),
//!    emitted and read back by the candidate itself, by serde_yaml_ng (an
//!    older ldm), read the other way, and checked against the rules by which
//!    the Go tool's yaml.v3 fills its struct's string and int fields.
//!
//! Candidates: serde_yaml_ng (libyaml, the baseline), serde-saphyr with its
//! default options, `ldm::yaml` (serde-saphyr with ldm's bounds: the code the
//! store runs), and the tree-only crates saphyr and yaml-rust2, which have no
//! serde support: their rows go through `serde_json::Value` both ways, the
//! cheapest way ldm could use them.
//!
//! `cargo bench --manifest-path benches/yaml-bakeoff/Cargo.toml -- dump DIR` writes each candidate's output of
//! the fidelity project to `DIR/N.yaml` and what the Go tool should read
//! from it to `DIR/expected.json` (JSON of the Go tool's struct), for a check
//! with the real yaml.v3 where Go is at hand (DESIGN.md says how it went).
//!
//! Environment: `LDM_BENCH_ITERS` (default 21).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use ldm_model::{Container, Defaults, Op, Owner, Pending, Project, Snapshot, User};
use ldm_store::snapshot;
use serde::{Deserialize, Deserializer, Serialize};

const SNAPSHOTS: usize = 10_000;
const CONTAINERS: usize = 10;
const CHILD_AS_BYTES: u64 = 2 << 30;
const CHILD_CPU_SECS: u64 = 20;
const HEADER: &str = "# ldm project file (lxc-dev-manager compatible). Edit ports and users freely\n\
                      # between commands; keep the `ldm:` key, it ties this file to containers.log.\n";
/// The mark the bench's own document shape writes and reads: the part of
/// ldm's mark (`src/store/snapshot.rs`) every candidate can hold; ldm's
/// `log` and `sha` are compared apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    generation: u64,
    seq: u64,
}

const MARK: Mark = Mark {
    generation: 3,
    seq: 41,
};

/// ldm's own mark for `MARK`.
const LDM_MARK: snapshot::Mark = snapshot::Mark {
    generation: 3,
    seq: 41,
    log: Some([7; 16]),
};

/// What ldm's `snapshot::decode` returns, as the bench compares it.
fn from_ldm(doc: snapshot::Doc) -> Parsed {
    let mark = doc.mark.map(|m| Mark {
        generation: m.generation,
        seq: m.seq,
    });
    (doc.project, mark)
}

// The document as src/store/snapshot.rs reads and writes it (its DocIn and
// DocOut are private); `check_mirror` holds the two copies together.

#[derive(Deserialize)]
struct DocIn {
    project: String,
    #[serde(default)]
    remote: Option<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    defaults: Defaults,
    #[serde(default, deserialize_with = "null_is_default")]
    containers: BTreeMap<String, Container>,
    #[serde(default)]
    ldm: Option<Mark>,
}

#[derive(Serialize)]
struct DocOut<'a> {
    project: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: &'a Option<String>,
    #[serde(skip_serializing_if = "defaults_empty")]
    defaults: &'a Defaults,
    containers: &'a BTreeMap<String, Container>,
    ldm: Mark,
}

fn defaults_empty(d: &&Defaults) -> bool {
    d.ports.is_empty() && d.user.is_none()
}

fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

type Parsed = (Project, Option<Mark>);

fn from_doc(doc: DocIn) -> Parsed {
    (
        Project {
            project: doc.project,
            remote: doc.remote,
            lxd_project: None,
            defaults: doc.defaults,
            containers: doc.containers,
        },
        doc.ldm,
    )
}

fn doc_out(p: &Project) -> DocOut<'_> {
    DocOut {
        project: &p.project,
        remote: &p.remote,
        defaults: &p.defaults,
        containers: &p.containers,
        ldm: MARK,
    }
}

/// serde_ignored's path as the store reports it.
fn dotted(path: serde_ignored::Path<'_>) -> String {
    let path = path.to_string();
    let keys: Vec<&str> = path.split('.').filter(|k| *k != "?").collect();
    keys.join(".")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cand {
    YamlNg,
    Saphyr,
    Ldm,
    SaphyrTree,
    YamlRust2,
}

const ALL: [Cand; 5] = [
    Cand::YamlNg,
    Cand::Saphyr,
    Cand::Ldm,
    Cand::SaphyrTree,
    Cand::YamlRust2,
];

impl Cand {
    fn name(self) -> &'static str {
        match self {
            Cand::YamlNg => "serde_yaml_ng 0.10 (before)",
            Cand::Saphyr => "serde-saphyr 2.2, defaults",
            Cand::Ldm => "ldm::yaml (serde-saphyr, bounded)",
            Cand::SaphyrTree => "saphyr 0.3 (tree + serde_json)",
            Cand::YamlRust2 => "yaml-rust2 0.13 (tree + serde_json)",
        }
    }

    fn from_index(i: &str) -> Option<Cand> {
        ALL.get(i.parse::<usize>().ok()?).copied()
    }

    fn index(self) -> usize {
        ALL.iter().position(|c| *c == self).unwrap_or(0)
    }

    fn parse(self, text: &str) -> Result<Parsed, String> {
        match self {
            Cand::YamlNg => serde_yaml_ng::from_str(text)
                .map(from_doc)
                .map_err(|e| e.to_string()),
            Cand::Saphyr => serde_saphyr::from_str(text)
                .map(from_doc)
                .map_err(|e| e.to_string()),
            Cand::Ldm => snapshot::decode(text).map(from_ldm).map_err(doc_error),
            Cand::SaphyrTree => {
                let json = saphyr_tree::parse(text)?;
                serde_json::from_value(json)
                    .map(from_doc)
                    .map_err(|e| e.to_string())
            }
            Cand::YamlRust2 => {
                let json = rust2_tree::parse(text)?;
                serde_json::from_value(json)
                    .map(from_doc)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// [`Cand::parse`] plus the unknown keys, as the store parses.
    fn parse_unknown(self, text: &str) -> Result<(Parsed, Vec<String>), String> {
        let mut unknown = Vec::new();
        let parsed = match self {
            Cand::YamlNg => {
                let de = serde_yaml_ng::Deserializer::from_str(text);
                serde_ignored::deserialize(de, |p| unknown.push(dotted(p)))
                    .map(from_doc)
                    .map_err(|e| e.to_string())?
            }
            Cand::Saphyr => serde_saphyr::with_deserializer_from_str(text, |de| {
                serde_ignored::deserialize(de, |p| unknown.push(dotted(p)))
            })
            .map(from_doc)
            .map_err(|e| e.to_string())?,
            Cand::Ldm => {
                let doc = snapshot::decode(text).map_err(doc_error)?;
                unknown = doc.unknown.clone();
                from_ldm(doc)
            }
            Cand::SaphyrTree | Cand::YamlRust2 => {
                let json = if self == Cand::SaphyrTree {
                    saphyr_tree::parse(text)?
                } else {
                    rust2_tree::parse(text)?
                };
                serde_ignored::deserialize(json, |p| unknown.push(dotted(p)))
                    .map(from_doc)
                    .map_err(|e| e.to_string())?
            }
        };
        Ok((parsed, unknown))
    }

    fn emit(self, p: &Project) -> Result<String, String> {
        let body = match self {
            Cand::YamlNg => serde_yaml_ng::to_string(&doc_out(p)).map_err(|e| e.to_string())?,
            Cand::Saphyr => serde_saphyr::to_string(&doc_out(p)).map_err(|e| e.to_string())?,
            Cand::Ldm => return snapshot::encode(p, LDM_MARK).map_err(|e| e.message),
            Cand::SaphyrTree => {
                let json = serde_json::to_value(doc_out(p)).map_err(|e| e.to_string())?;
                saphyr_tree::emit(&json)?
            }
            Cand::YamlRust2 => {
                let json = serde_json::to_value(doc_out(p)).map_err(|e| e.to_string())?;
                rust2_tree::emit(&json)?
            }
        };
        Ok(format!("{HEADER}{body}"))
    }
}

mod saphyr_tree {
    use saphyr::{LoadableYamlNode, Mapping, Scalar, Yaml, YamlEmitter};
    use serde_json::Value;
    use std::borrow::Cow;

    pub fn parse(text: &str) -> Result<Value, String> {
        let docs = Yaml::load_from_str(text).map_err(|e| e.to_string())?;
        let doc = docs.into_iter().next().ok_or("no document")?;
        to_json(&doc)
    }

    fn to_json(y: &Yaml) -> Result<Value, String> {
        Ok(match y {
            Yaml::Value(s) => match s {
                Scalar::Null => Value::Null,
                Scalar::Boolean(b) => Value::Bool(*b),
                Scalar::Integer(i) => Value::from(*i),
                Scalar::FloatingPoint(f) => Value::from(f.into_inner()),
                Scalar::String(s) => Value::String(s.to_string()),
            },
            Yaml::Representation(s, _, _) => Value::String(s.to_string()),
            Yaml::Sequence(v) => Value::Array(v.iter().map(to_json).collect::<Result<_, _>>()?),
            Yaml::Mapping(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    let key = match to_json(k)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.insert(key, to_json(v)?);
                }
                Value::Object(out)
            }
            Yaml::Tagged(_, inner) => to_json(inner)?,
            other => return Err(format!("unsupported node {other:?}")),
        })
    }

    fn from_json(v: &Value) -> Yaml<'static> {
        match v {
            Value::Null => Yaml::Value(Scalar::Null),
            Value::Bool(b) => Yaml::Value(Scalar::Boolean(*b)),
            Value::Number(n) => Yaml::Value(Scalar::Integer(n.as_i64().unwrap_or_default())),
            Value::String(s) => Yaml::Value(Scalar::String(Cow::Owned(s.clone()))),
            Value::Array(a) => Yaml::Sequence(a.iter().map(from_json).collect()),
            Value::Object(o) => {
                let mut m = Mapping::new();
                for (k, v) in o {
                    m.insert(
                        Yaml::Value(Scalar::String(Cow::Owned(k.clone()))),
                        from_json(v),
                    );
                }
                Yaml::Mapping(m)
            }
        }
    }

    pub fn emit(v: &Value) -> Result<String, String> {
        let mut out = String::new();
        YamlEmitter::new(&mut out)
            .dump(&from_json(v))
            .map_err(|e| e.to_string())?;
        out.push('\n');
        Ok(out)
    }
}

mod rust2_tree {
    use serde_json::Value;
    use yaml_rust2::yaml::Hash;
    use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

    pub fn parse(text: &str) -> Result<Value, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
        let doc = docs.into_iter().next().ok_or("no document")?;
        to_json(&doc)
    }

    fn to_json(y: &Yaml) -> Result<Value, String> {
        Ok(match y {
            Yaml::Null => Value::Null,
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::Real(s) => Value::from(s.parse::<f64>().map_err(|e| e.to_string())?),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Array(v) => Value::Array(v.iter().map(to_json).collect::<Result<_, _>>()?),
            Yaml::Hash(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    let key = match to_json(k)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.insert(key, to_json(v)?);
                }
                Value::Object(out)
            }
            other => return Err(format!("unsupported node {other:?}")),
        })
    }

    fn from_json(v: &Value) -> Yaml {
        match v {
            Value::Null => Yaml::Null,
            Value::Bool(b) => Yaml::Boolean(*b),
            Value::Number(n) => Yaml::Integer(n.as_i64().unwrap_or_default()),
            Value::String(s) => Yaml::String(s.clone()),
            Value::Array(a) => Yaml::Array(a.iter().map(from_json).collect()),
            Value::Object(o) => {
                let mut m = Hash::new();
                for (k, v) in o {
                    m.insert(Yaml::String(k.clone()), from_json(v));
                }
                Yaml::Hash(m)
            }
        }
    }

    pub fn emit(v: &Value) -> Result<String, String> {
        let mut out = String::new();
        YamlEmitter::new(&mut out)
            .dump(&from_json(v))
            .map_err(|e| e.to_string())?;
        out.push('\n');
        Ok(out)
    }
}

/// How the Go tool's yaml.v3 fills its struct from a document: a string
/// field takes a scalar's text as written, except that a plain `~`, `null`
/// (any case yaml.v3 knows) or empty scalar leaves it empty; an int field
/// needs a plain integer. Built on saphyr-parser's events, which report
/// each scalar's style.
mod go_view {
    use std::collections::BTreeMap;

    use ldm_model::Project;
    use saphyr_parser::{Event, Parser, ScalarStyle};

    enum Node {
        Scalar(String, bool),
        Seq(Vec<Node>),
        Map(Vec<(String, Node)>),
    }

    /// The fields the Go tool's struct has.
    #[derive(Debug, PartialEq, Default)]
    pub struct View {
        project: String,
        ports: Vec<i64>,
        user: (String, String),
        containers: BTreeMap<String, ContainerView>,
    }

    #[derive(Debug, PartialEq, Default)]
    struct ContainerView {
        image: String,
        ports: Vec<i64>,
        user: (String, String),
        snapshots: BTreeMap<String, (String, String)>,
    }

    /// What yaml.v3 should read from a document holding `p`.
    pub fn expected(p: &Project) -> View {
        let user = |u: &Option<ldm_model::User>| {
            u.as_ref().map_or_else(Default::default, |u| {
                (
                    u.name.clone().unwrap_or_default(),
                    u.password.clone().unwrap_or_default(),
                )
            })
        };
        View {
            project: p.project.clone(),
            ports: p.defaults.ports.iter().map(|x| i64::from(*x)).collect(),
            user: user(&p.defaults.user),
            containers: p
                .containers
                .iter()
                .map(|(name, c)| {
                    let view = ContainerView {
                        image: c.image.clone(),
                        ports: c.ports.iter().map(|x| i64::from(*x)).collect(),
                        user: user(&c.user),
                        snapshots: c
                            .snapshots
                            .iter()
                            .map(|(n, s)| {
                                (n.clone(), (s.description.clone(), s.created_at.clone()))
                            })
                            .collect(),
                    };
                    (name.clone(), view)
                })
                .collect(),
        }
    }

    /// What yaml.v3 reads from `text`, or why it would fail.
    pub fn read(text: &str) -> Result<View, String> {
        let mut events = Vec::new();
        for ev in Parser::new_from_str(text) {
            let (ev, _) = ev.map_err(|e| e.to_string())?;
            events.push(ev);
        }
        let mut it: Events<'_> = events.into_iter().peekable();
        // StreamStart, DocumentStart
        it.next();
        it.next();
        let root = node(&mut it)?;
        let mut view = View::default();
        for (k, v) in map(&root)? {
            match k.as_str() {
                "project" => view.project = string(v)?,
                "defaults" => {
                    for (k, v) in map(v)? {
                        match k.as_str() {
                            "ports" => view.ports = ints(v)?,
                            "user" => view.user = user(v)?,
                            _ => {}
                        }
                    }
                }
                "containers" => {
                    for (name, v) in map(v)? {
                        let mut c = ContainerView::default();
                        for (k, v) in map(v)? {
                            match k.as_str() {
                                "image" => c.image = string(v)?,
                                "ports" => c.ports = ints(v)?,
                                "user" => c.user = user(v)?,
                                "snapshots" => {
                                    for (sn, v) in map(v)? {
                                        let mut s = (String::new(), String::new());
                                        for (k, v) in map(v)? {
                                            match k.as_str() {
                                                "description" => s.0 = string(v)?,
                                                "created_at" => s.1 = string(v)?,
                                                _ => {}
                                            }
                                        }
                                        c.snapshots.insert(sn.clone(), s);
                                    }
                                }
                                _ => {}
                            }
                        }
                        view.containers.insert(name.clone(), c);
                    }
                }
                _ => {}
            }
        }
        Ok(view)
    }

    type Events<'a> = std::iter::Peekable<std::vec::IntoIter<Event<'a>>>;

    fn node(it: &mut Events<'_>) -> Result<Node, String> {
        match it.next() {
            Some(Event::Scalar(v, style, _, _)) => {
                Ok(Node::Scalar(v.into_owned(), style == ScalarStyle::Plain))
            }
            Some(Event::SequenceStart(..)) => {
                let mut items = Vec::new();
                while !matches!(it.peek(), Some(Event::SequenceEnd)) {
                    items.push(node(it)?);
                }
                it.next();
                Ok(Node::Seq(items))
            }
            Some(Event::MappingStart(..)) => {
                let mut items = Vec::new();
                loop {
                    let key = match it.next() {
                        Some(Event::MappingEnd) => return Ok(Node::Map(items)),
                        Some(Event::Scalar(k, ..)) => k.into_owned(),
                        other => return Err(format!("non-scalar key {other:?}")),
                    };
                    items.push((key, node(it)?));
                }
            }
            other => Err(format!("unexpected event {other:?}")),
        }
    }

    fn map(n: &Node) -> Result<Vec<(&String, &Node)>, String> {
        match n {
            Node::Map(items) => Ok(items.iter().map(|(k, v)| (k, v)).collect()),
            Node::Scalar(v, true) if is_null(v) => Ok(Vec::new()),
            _ => Err("expected a mapping".into()),
        }
    }

    fn is_null(v: &str) -> bool {
        matches!(v, "" | "~" | "null" | "Null" | "NULL")
    }

    fn string(n: &Node) -> Result<String, String> {
        match n {
            Node::Scalar(v, true) if is_null(v) => Ok(String::new()),
            Node::Scalar(v, _) => Ok(v.clone()),
            _ => Err("expected a string".into()),
        }
    }

    fn ints(n: &Node) -> Result<Vec<i64>, String> {
        let Node::Seq(items) = n else {
            return Err("ports: expected a sequence".into());
        };
        items
            .iter()
            .map(|i| match i {
                Node::Scalar(v, true) => v.parse().map_err(|_| format!("port {v:?} is no int")),
                Node::Scalar(v, false) => Err(format!("port {v:?} is quoted: !!str into int")),
                _ => Err("port: expected a scalar".into()),
            })
            .collect()
    }

    fn user(n: &Node) -> Result<(String, String), String> {
        let mut u = (String::new(), String::new());
        for (k, v) in map(n)? {
            match k.as_str() {
                "name" => u.0 = string(v)?,
                "password" => u.1 = string(v)?,
                _ => {}
            }
        }
        Ok(u)
    }
}

/// The state the speed table uses: `n` snapshots over ten containers, as
/// benches/store.rs builds it.
fn big_project(n: usize) -> Project {
    let mut p = Project::new("bench", vec![5173, 8000]);
    for c in 0..CONTAINERS {
        p.containers.insert(
            format!("c{c}"),
            Container {
                image: "ubuntu:24.04".into(),
                ..Container::default()
            },
        );
    }
    for i in 0..n {
        if let Some(c) = p.containers.get_mut(&format!("c{}", i % CONTAINERS)) {
            c.snapshots.insert(
                format!("snap-{i:05}"),
                Snapshot {
                    description: format!("before step {i} of the migration"),
                    created_at: "2026-01-15T10:30:00Z".into(),
                    pending: None,
                },
            );
        }
    }
    if let Some(c) = p.containers.get_mut("c0") {
        c.pending = Some(Pending {
            op: Op::Reset {
                snapshot: "snap-00000".into(),
                restart: true,
            },
            owner: Owner {
                pid: 4242,
                slot: 7,
                ..Owner::default()
            },
            started_at: "2026-01-15T10:31:00Z".into(),
            setup: None,
        });
    }
    p
}

/// Strings that YAML readers disagree on, or that need quoting or escapes.
fn tricky_strings() -> Vec<String> {
    let mut out: Vec<String> = [
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
        "Y",
        "true",
        "False",
        "NULL",
        "null",
        "Null",
        "~",
        "",
        "1.0",
        "0123",
        "0x1F",
        "0o17",
        "1e3",
        ".inf",
        "-.inf",
        ".nan",
        "+1",
        "1_000",
        "12:30",
        "2026-01-15",
        "2026-01-15T10:30:00Z",
        "2026-01-15 10:30:00",
        "a: b",
        "a:b",
        "#x",
        "x #y",
        "'q'",
        "\"dq\"",
        "it's \"q\" $x",
        "  leading",
        "trailing  ",
        " ",
        "\ttab",
        "l1\nl2",
        "l1\nl2\n",
        "\n",
        "ends\r\n",
        "ünï©ødé ✓ 日本 🚀",
        "- dash",
        "[x]",
        "{x}",
        "*star",
        "&amp",
        "!bang",
        "%pct",
        "@at",
        "`bt",
        "|",
        "> gt",
        "---",
        "...",
        "<<",
        "=",
        "?",
        "-",
        ",",
        "back\\slash",
        "ctl\u{1}x",
        "\u{feff}bom",
        "nel\u{85}x",
        "ls\u{2028}x",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.push("a long description with spaces, ".repeat(4));
    out
}

/// A project holding every tricky string in every string field.
fn tricky_project() -> Project {
    let mut p = Project::new("fidelity", vec![5173, 8000]);
    p.remote = Some("on".into());
    p.defaults.user = Some(User {
        name: Some("dev".into()),
        password: Some("it's \"q\" $x".into()),
    });
    for (i, s) in tricky_strings().into_iter().enumerate() {
        let mut snapshots = BTreeMap::new();
        snapshots.insert(
            "snap".to_string(),
            Snapshot {
                description: s.clone(),
                created_at: s.clone(),
                pending: None,
            },
        );
        p.containers.insert(
            format!("c{i:02}"),
            Container {
                image: s.clone(),
                ports: vec![1000 + i as u16],
                user: Some(User {
                    name: Some(s.clone()),
                    password: Some(s),
                }),
                snapshots,
                pending: None,
                ..Container::default()
            },
        );
    }
    p
}

/// A file as the Go tool writes it: yaml.v3 3.0.1's `Marshal` of its struct
/// holding `go_file_project()`, verbatim (4-space indents, `- ` indented).
const GO_FILE: &str = r#"project: webapp
defaults:
    ports:
        - 5173
        - 8000
    user:
        name: dev
        password: "yes"
containers:
    dev:
        image: ubuntu:24.04
        ports:
            - 3000
        user:
            name: admin
            password: it's "q" $x
        snapshots:
            initial-state:
                description: Initial state after setup
                created_at: "2026-01-15T10:30:00Z"
            s2:
                description: |-
                    two
                    lines
                created_at: "2026-01-16T08:00:00Z"
            s3:
                description: "~"
                created_at: "0123"
"#;

fn go_file_project() -> Project {
    let mut p = Project::new("webapp", vec![5173, 8000]);
    p.defaults.user = Some(User {
        name: Some("dev".into()),
        password: Some("yes".into()),
    });
    let snap = |d: &str, t: &str| Snapshot {
        description: d.into(),
        created_at: t.into(),
        pending: None,
    };
    let mut snapshots = BTreeMap::new();
    snapshots.insert(
        "initial-state".into(),
        snap("Initial state after setup", "2026-01-15T10:30:00Z"),
    );
    snapshots.insert("s2".into(), snap("two\nlines", "2026-01-16T08:00:00Z"));
    snapshots.insert("s3".into(), snap("~", "0123"));
    p.containers.insert(
        "dev".into(),
        Container {
            image: "ubuntu:24.04".into(),
            ports: vec![3000],
            user: Some(User {
                name: Some("admin".into()),
                password: Some("it's \"q\" $x".into()),
            }),
            snapshots,
            pending: None,
            ..Container::default()
        },
    );
    p
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(&args[2..]);
        return;
    }
    if let (Some("dump"), Some(dir)) = (args.get(1).map(String::as_str), args.get(2)) {
        dump(std::path::Path::new(dir));
        return;
    }
    let iters: usize = std::env::var("LDM_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    println!(
        "ldm yaml bench: {iters} iterations, medians; {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    check_mirror();
    speed(iters);
    bombs();
    fidelity();
}

/// The bench's copy of the document shape parses ldm's file as ldm does.
fn check_mirror() {
    let p = big_project(100);
    let text = snapshot::encode(&p, LDM_MARK).expect("encode");
    let ours = Cand::Saphyr.parse(&text).expect("mirror parse");
    assert_eq!(
        ours,
        from_ldm(snapshot::decode(&text).expect("decode")),
        "mirror"
    );
    assert_eq!(ours, (p, Some(MARK)), "round trip");
}

fn doc_error(e: snapshot::DocError) -> String {
    match e {
        snapshot::DocError::Yaml(e) => e.message,
        snapshot::DocError::NoProject => "no `project:` key".to_string(),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms<T>(f: impl FnOnce() -> T) -> f64 {
    let start = Instant::now();
    black_box(f());
    start.elapsed().as_secs_f64() * 1e3
}

fn speed(iters: usize) {
    let p = big_project(SNAPSHOTS);
    let text = snapshot::encode(&p, LDM_MARK).expect("encode");
    let old = Cand::YamlNg.emit(&p).expect("emit");
    let json = serde_json::to_vec(&p).expect("json");
    println!(
        "\n10,000 snapshots: containers.yaml {} bytes as ldm writes it now ({} as serde_yaml_ng wrote it), its load-cache JSON {} bytes",
        text.len(),
        old.len(),
        json.len()
    );
    let diff = text
        .lines()
        .zip(old.lines())
        .filter(|(a, b)| a != b)
        .count()
        + text.lines().count().abs_diff(old.lines().count());
    println!(
        "lines that differ from serde_yaml_ng's output of the same state: {diff} of {}",
        old.lines().count()
    );
    for c in ALL {
        let parsed = c.parse(&text).map(|(q, _)| q == p);
        assert_eq!(parsed, Ok(true), "{} misreads the 10k file", c.name());
    }
    // [candidate][parse, parse+unknown, emit] -> samples
    let mut t = vec![[Vec::new(), Vec::new(), Vec::new()]; ALL.len()];
    for i in 0..iters + 1 {
        for k in 0..ALL.len() {
            let c = ALL[(i + k) % ALL.len()];
            let ci = c.index();
            let a = ms(|| c.parse(&text));
            let b = ms(|| c.parse_unknown(&text));
            let e = ms(|| c.emit(&p));
            if i > 0 {
                // The first round warms caches and the allocator.
                t[ci][0].push(a);
                t[ci][1].push(b);
                t[ci][2].push(e);
            }
        }
    }
    println!("\n| candidate | parse ms | vs before | parse + unknown keys ms | vs before | emit ms | vs before |");
    println!("|---|---|---|---|---|---|---|");
    let base = t[0].clone();
    for c in ALL {
        let row = &t[c.index()];
        let mut cells = Vec::new();
        for m in 0..3 {
            let mut ratios: Vec<f64> = row[m].iter().zip(&base[m]).map(|(a, b)| a / b).collect();
            let mut v = row[m].clone();
            cells.push(format!(
                "{:.1} | {:.2}x",
                median(&mut v),
                median(&mut ratios)
            ));
        }
        println!("| {} | {} |", c.name(), cells.join(" | "));
    }
}

/// The hostile inputs, by name.
fn bomb(case: &str) -> String {
    match case {
        // Under a key ldm does not know, as a typo'd or foreign key would be:
        // a typed field would refuse the first `[` at once.
        "nest-20k" => format!("project: p\nx: {}", "[".repeat(20_000)),
        "nest-200k" => format!("project: p\nx: {}", "[".repeat(200_000)),
        "laughs" => {
            let mut text =
                String::from("project: p\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
            for i in 1..10 {
                let refs = vec![format!("*a{}", i - 1); 9].join(", ");
                text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
            }
            text
        }
        "strings" => {
            let mut text = format!(
                "project: p\nx: &s \"{}\"\ncontainers:\n  c:\n    image: i\n    snapshots:\n",
                "A".repeat(100_000)
            );
            for i in 0..5000 {
                text.push_str(&format!("      s{i}: {{description: *s}}\n"));
            }
            text
        }
        "containers" => {
            let mut text = String::from("project: p\nx: &c\n  image: i\n  snapshots:\n");
            for i in 0..1000 {
                text.push_str(&format!("    s{i}: {{description: d}}\n"));
            }
            text.push_str("containers:\n");
            for i in 0..2000 {
                text.push_str(&format!("  c{i}: *c\n"));
            }
            text
        }
        _ => String::new(),
    }
}

const CASES: [(&str, &str); 5] = [
    ("nest-20k", "`x: ` then 20 KB of `[`"),
    ("nest-200k", "`x: ` then 200 KB of `[`"),
    (
        "laughs",
        "billion laughs (9 x 9 aliases) under unknown keys",
    ),
    (
        "strings",
        "100 KB string aliased 5,000 times as descriptions",
    ),
    (
        "containers",
        "container with 1,000 snapshots aliased 2,000 times",
    ),
];

/// Runs in the child: parse one bomb as the store does, print the outcome.
fn child(args: &[String]) {
    let (Some(c), Some(case)) = (args.first().and_then(|a| Cand::from_index(a)), args.get(1))
    else {
        println!("bad child arguments {args:?}");
        return;
    };
    limit(libc::RLIMIT_AS, CHILD_AS_BYTES);
    limit(libc::RLIMIT_CPU, CHILD_CPU_SECS);
    let text = bomb(case);
    match c.parse_unknown(&text) {
        Ok(((p, _), _)) => {
            let json = serde_json::to_vec(&p).map_or(0, |j| j.len());
            println!("parsed: cache {:.0} MB", json as f64 / 1e6);
        }
        Err(e) => {
            let line = e.lines().next().unwrap_or_default();
            let cut: String = line.chars().take(60).collect();
            println!("refused: {cut}");
        }
    }
}

fn limit(resource: libc::__rlimit_resource_t, value: u64) {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value + if resource == libc::RLIMIT_CPU { 5 } else { 0 },
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    unsafe { libc::setrlimit(resource, &lim) };
}

struct Outcome {
    text: String,
    cpu_s: f64,
    rss_mb: f64,
}

// The child is reaped by wait4, which clippy does not know.
#[allow(clippy::zombie_processes)]
fn run_child(c: Cand, case: &str) -> Outcome {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["child", &c.index().to_string(), case])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the locals above.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let cpu_s = usage.ru_utime.tv_sec as f64
        + usage.ru_utime.tv_usec as f64 / 1e6
        + usage.ru_stime.tv_sec as f64
        + usage.ru_stime.tv_usec as f64 / 1e6;
    let text = if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        if sig == libc::SIGXCPU {
            format!("killed at the {CHILD_CPU_SECS} s CPU limit")
        } else if err.contains("overflowed its stack") {
            "crashed: stack overflow".into()
        } else if err.contains("memory allocation") {
            format!("aborted: out of memory at {} GiB", CHILD_AS_BYTES >> 30)
        } else {
            format!("killed by signal {sig}")
        }
    } else if err.contains("panicked") {
        "panicked".into()
    } else {
        out.trim().to_string()
    };
    Outcome {
        text,
        cpu_s,
        rss_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

fn bombs() {
    println!(
        "\nBombs, each parsed (with unknown-key tracking) in a child limited to {} GiB of address space and {CHILD_CPU_SECS} s of CPU:",
        CHILD_AS_BYTES >> 30
    );
    for (case, what) in CASES {
        println!("\n{what} ({} bytes):\n", bomb(case).len());
        println!("| candidate | outcome | CPU s | peak RSS MB |");
        println!("|---|---|---|---|");
        for c in ALL {
            let o = run_child(c, case);
            println!(
                "| {} | {} | {:.2} | {:.0} |",
                c.name(),
                o.text.replace('|', "\\|"),
                o.cpu_s,
                o.rss_mb
            );
        }
    }
}

fn check(ok: Result<bool, String>, notes: &mut Vec<String>, what: String) -> &'static str {
    match ok {
        Ok(true) => "yes",
        Ok(false) => {
            notes.push(format!("{what}: reads back different values"));
            "NO"
        }
        Err(e) => {
            let e: String = e
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(100)
                .collect();
            notes.push(format!("{what}: {e}"));
            "NO"
        }
    }
}

fn fidelity() {
    let p = tricky_project();
    let expected = (p.clone(), Some(MARK));
    let empty = Project::new("empty", vec![]);
    let old = Cand::YamlNg.emit(&p).expect("serde_yaml_ng emits");
    let go = go_file_project();
    println!(
        "\nFidelity: {} tricky strings in every string field (image, user, password, description, created_at):\n",
        tricky_strings().len()
    );
    println!("| candidate | own output reads back | serde_yaml_ng (older ldm) reads it | reads serde_yaml_ng's output | yaml.v3 rules read it | reads a Go-tool file | empty `containers:` |");
    println!("|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for c in ALL {
        let name = c.name();
        let emitted = c.emit(&p);
        let same = |r: Result<Parsed, String>| r.map(|q| q == expected);
        let cells = [
            check(
                emitted.clone().and_then(|t| same(c.parse(&t))),
                &mut notes,
                format!("{name}, own output"),
            ),
            check(
                emitted.clone().and_then(|t| same(Cand::YamlNg.parse(&t))),
                &mut notes,
                format!("{name}, read by serde_yaml_ng"),
            ),
            check(
                same(c.parse(&old)),
                &mut notes,
                format!("{name}, reading serde_yaml_ng's"),
            ),
            check(
                emitted.and_then(|t| go_view::read(&t).map(|v| v == go_view::expected(&p))),
                &mut notes,
                format!("{name}, yaml.v3 rules"),
            ),
            check(
                c.parse(GO_FILE).map(|(q, m)| q == go && m.is_none()),
                &mut notes,
                format!("{name}, Go-tool file"),
            ),
            check(
                c.emit(&empty).and_then(|t| {
                    let back = c.parse(&t)?;
                    let null = c.parse("project: empty\ncontainers:\n")?;
                    let v3 = go_view::read(&t)?;
                    Ok(back == (empty.clone(), Some(MARK))
                        && null.0 == empty
                        && v3 == go_view::expected(&empty))
                }),
                &mut notes,
                format!("{name}, empty containers"),
            ),
        ];
        println!("| {name} | {} |", cells.join(" | "));
    }
    for n in &notes {
        println!("- {n}");
    }
    println!(
        "- (the yaml.v3-rules reader runs on saphyr-parser, a YAML 1.2 parser: unlike libyaml \
         and yaml.v3 it does not take U+2028 for a line break)"
    );
    // The strings behind each NO above, one string per project.
    for c in ALL {
        let mut wrong: [Vec<String>; 4] = Default::default();
        for s in tricky_strings() {
            let mut q = Project::new("one", vec![1]);
            q.containers.insert(
                "c".into(),
                Container {
                    image: s.clone(),
                    ..Container::default()
                },
            );
            let want = (q.clone(), Some(MARK));
            let emitted = c.emit(&q);
            let checks = [
                emitted.clone().and_then(|t| c.parse(&t)).map(|r| r == want),
                emitted
                    .clone()
                    .and_then(|t| Cand::YamlNg.parse(&t))
                    .map(|r| r == want),
                Cand::YamlNg
                    .emit(&q)
                    .and_then(|t| c.parse(&t))
                    .map(|r| r == want),
                emitted
                    .and_then(|t| go_view::read(&t))
                    .map(|v| v == go_view::expected(&q)),
            ];
            for (w, ok) in wrong.iter_mut().zip(checks) {
                if ok != Ok(true) {
                    w.push(format!("{s:?}"));
                }
            }
        }
        let what = [
            "misreads its own output of",
            "serde_yaml_ng misreads its output of",
            "it misreads serde_yaml_ng's output of",
            "yaml.v3 rules misread its output of",
        ];
        for (w, what) in wrong.iter().zip(what) {
            if !w.is_empty() {
                println!("- {}: {what} {}", c.name(), w.join(", "));
            }
        }
    }
}

/// The fidelity project as each candidate writes it, and what the Go
/// tool's struct should hold after reading it, as Go's encoding/json prints
/// it (nil slices, maps and pointers as null).
fn dump(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("create the folder");
    let p = tricky_project();
    for c in ALL {
        if let Ok(text) = c.emit(&p) {
            let path = dir.join(format!("{}.yaml", c.index()));
            std::fs::write(path, text).expect("write");
        }
    }
    let user = |u: &Option<User>| {
        u.as_ref().map(|u| {
            serde_json::json!({
                "name": u.name.clone().unwrap_or_default(),
                "password": u.password.clone().unwrap_or_default(),
            })
        })
    };
    let ports = |v: &[u16]| (!v.is_empty()).then(|| v.to_vec());
    let containers: serde_json::Map<String, serde_json::Value> = p
        .containers
        .iter()
        .map(|(name, c)| {
            let snaps: serde_json::Map<String, serde_json::Value> = c
                .snapshots
                .iter()
                .map(|(n, s)| {
                    let v = serde_json::json!({"description": s.description, "created_at": s.created_at});
                    (n.clone(), v)
                })
                .collect();
            let v = serde_json::json!({
                "image": c.image,
                "ports": ports(&c.ports),
                "user": user(&c.user),
                "snapshots": (!snaps.is_empty()).then_some(snaps),
            });
            (name.clone(), v)
        })
        .collect();
    let expected = serde_json::json!({
        "project": p.project,
        "defaults": {"ports": ports(&p.defaults.ports), "user": user(&p.defaults.user)},
        "containers": containers,
    });
    std::fs::write(dir.join("expected.json"), expected.to_string()).expect("write");
    for c in ALL {
        println!("{}.yaml: {}", c.index(), c.name());
    }
}
