//! The client configuration a harness writes for ldm (`LXD_CONF`).

use crate::Double;

impl Double {
    /// The client configuration (`LXD_CONF/config.yml`) of a client whose
    /// default remote is `remote` with current project `project`: `local`
    /// is this double (`unix://`); any other name is an HTTPS server on
    /// another machine.
    pub fn client_config(remote: &str, project: &str) -> String {
        let mut out = format!(
            "default-remote: {remote}\nremotes:\n  local:\n    addr: unix://\n    public: false\n"
        );
        let proj = |p: &str| {
            if p == "default" {
                String::new()
            } else {
                format!("    project: {p}\n")
            }
        };
        if remote == "local" {
            out.push_str(&proj(project));
        } else {
            out.push_str(&format!(
                "  {remote}:\n    addr: https://198.51.100.7:8443\n    auth_type: tls\n    protocol: lxd\n    public: false\n{}",
                proj(project)
            ));
        }
        // The remotes the client ships with.
        for (name, addr) in [
            ("images", "https://images.linuxcontainers.org"),
            ("ubuntu", "https://cloud-images.ubuntu.com/releases"),
            ("ubuntu-daily", "https://cloud-images.ubuntu.com/daily"),
        ] {
            out.push_str(&format!(
                "  {name}:\n    addr: {addr}\n    protocol: simplestreams\n    public: true\n"
            ));
        }
        out.push_str("aliases: {}\n");
        out
    }
}
