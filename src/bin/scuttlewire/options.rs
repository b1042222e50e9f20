//! The agent's flags and environment variables.
//!
//! A value that can be judged alone is checked by its clap `value_parser`
//! (in `values`), so clap refuses it naming the flag, also when it came
//! from the environment. Checks that look at several flags together (QUIC
//! needs three files, QUIC and `--key-file` exclude each other,
//! `--advertise` borrows the port of `--bind`) are methods of
//! [`AgentArgs`] returning a [`Failure`] that names the flag. Nothing here
//! opens a socket, so it is all unit-tested.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::{Args, ValueEnum};
use scuttlewire::node::Discovery;
use scuttlewire::seal::Cipher;
use scuttlewire::{Config, Signatures};

use crate::Failure;
use crate::logging::{DEFAULT_LOG, LogFilter};
use crate::socket_path::{ControlFlag, parse_control};
use crate::values::{
    Advertise, Networks, Seeds, StateItems, parse_advertise, parse_duration, parse_max_members,
    parse_networks, parse_seeds, parse_state,
};

/// Flags of `scuttlewire agent`. Each reads the environment variable shown
/// in its help when the flag is absent.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Node name, unique in the cluster [default: this host's name; if there
    /// is none, the advertised address]
    #[arg(long, env = "SCUTTLEWIRE_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Address and UDP port to listen on; 0.0.0.0 or :: listen on every
    /// interface and advertise the host's address (see --advertise)
    #[arg(
        long,
        env = "SCUTTLEWIRE_BIND",
        value_name = "ADDR",
        default_value = "0.0.0.0:7946"
    )]
    pub bind: SocketAddr,

    /// Address peers reach this node at, IP or IP:PORT (IP alone takes the
    /// port of --bind) [default: the --bind address, or when that is
    /// 0.0.0.0 or ::, the host's address]
    #[arg(long, env = "SCUTTLEWIRE_ADVERTISE", value_name = "IP[:PORT]", value_parser = parse_advertise)]
    pub advertise: Option<Advertise>,

    /// Members to join through, comma-separated HOST:PORT (names or IP
    /// literals, IPv6 as `[::1]:7946`); names are resolved again at every
    /// attempt, so a seed that is not up yet is simply retried
    #[arg(long, env = "SCUTTLEWIRE_SEEDS", value_name = "HOST:PORT,...", value_parser = parse_seeds)]
    pub seeds: Vec<Seeds>,

    /// Cluster name; nodes of other clusters are ignored (and with
    /// --key-file it authenticates every datagram)
    #[arg(
        long,
        env = "SCUTTLEWIRE_CLUSTER",
        value_name = "NAME",
        default_value = "scuttlewire"
    )]
    pub cluster: String,

    /// Timing preset (probe, gossip and failure-detection intervals)
    #[arg(long, env = "SCUTTLEWIRE_PRESET", value_enum, default_value_t = Preset::Lan)]
    pub preset: Preset,

    /// File holding the base64 cluster key (make one with `scuttlewire
    /// keygen`): every datagram is encrypted and authenticated with it. It
    /// may hold several keys, one a line, the first one sealing (blank lines
    /// and `#` comments are skipped); the agent rewrites it after `keys
    /// install`, `use` and `remove`, so keep it writable by the agent
    #[arg(long, env = "SCUTTLEWIRE_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Cipher this node seals with when --key-file is given (every node
    /// opens all three) [default: aes-256-gcm]
    #[arg(long, env = "SCUTTLEWIRE_CIPHER", value_enum)]
    pub cipher: Option<CipherName>,

    /// QUIC transport: PEM file of the cluster CA that signed every node's
    /// certificate (needs --quic-cert and --quic-key)
    #[arg(long, env = "SCUTTLEWIRE_QUIC_CA", value_name = "PATH")]
    pub quic_ca: Option<PathBuf>,

    /// QUIC transport: PEM file of this node's certificate chain
    #[arg(long, env = "SCUTTLEWIRE_QUIC_CERT", value_name = "PATH")]
    pub quic_cert: Option<PathBuf>,

    /// QUIC transport: PEM file of this node's private key
    #[arg(long, env = "SCUTTLEWIRE_QUIC_KEY", value_name = "PATH")]
    pub quic_key: Option<PathBuf>,

    /// Signed state: off (default), sign (sign this node's state; check
    /// members whose identity is known, accept unsigned members: the
    /// rollout stage) or require (accept only state signed by a trusted
    /// identity). Sign and require need --identity-key
    #[arg(long, env = "SCUTTLEWIRE_SIGNATURES", value_name = "STAGE", default_value_t = Signatures::Off, value_parser = parse_signatures)]
    pub signatures: Signatures,

    /// Signed state: PEM file of this node's Ed25519 private key (PKCS#8).
    /// Without --identity-cert, a missing file is created with a fresh
    /// key (mode 0600); keep it: peers pin the key to the node name
    #[arg(long, env = "SCUTTLEWIRE_IDENTITY_KEY", value_name = "PATH")]
    pub identity_key: Option<PathBuf>,

    /// Signed state: PEM file of the identity key's certificate from the
    /// cluster CA, naming this node (`cargo run --example gen_certs --
    /// DIR --identity NAME`)
    #[arg(long, env = "SCUTTLEWIRE_IDENTITY_CERT", value_name = "PATH")]
    pub identity_cert: Option<PathBuf>,

    /// Signed state: PEM file of the CA that vouches for every member's
    /// identity [default: --quic-ca]. Without a CA, the first key seen for
    /// a name is pinned (trust on first use: weaker, see docs/SECURITY.md)
    #[arg(long, env = "SCUTTLEWIRE_IDENTITY_CA", value_name = "PATH")]
    pub identity_ca: Option<PathBuf>,

    /// Find the other nodes on this LAN by multicast, no --seeds needed:
    /// announce this node to a multicast group and join through the nodes
    /// heard there; sealed with --key-file; one agent per host (the
    /// variable: 1, true, yes or on; 0, false, no, off or empty for off)
    #[arg(long, env = "SCUTTLEWIRE_DISCOVERY", value_parser = FalseyValueParser::new())]
    pub discovery: bool,

    /// Multicast group of --discovery [default: 239.255.77.46, or ff12::7746
    /// for a node with an IPv6 address]
    #[arg(long, env = "SCUTTLEWIRE_DISCOVERY_GROUP", value_name = "IP")]
    pub discovery_group: Option<IpAddr>,

    /// UDP port of --discovery's group, the same on every node [default: 7947]
    #[arg(long, env = "SCUTTLEWIRE_DISCOVERY_PORT", value_name = "PORT")]
    pub discovery_port: Option<u16>,

    /// Time between --discovery announcements once joined, e.g. 30s, 1m
    /// (every second while alone, or this if shorter) [default: 30s]
    #[arg(long, env = "SCUTTLEWIRE_DISCOVERY_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub discovery_interval: Option<Duration>,

    /// Admit as members only nodes whose gossip address lies in one of
    /// these networks, comma-separated CIDR (10.0.0.0/8, fd00::/8) or
    /// bare addresses; others are kept out, counted and logged once each
    /// [default: every address]
    #[arg(long, env = "SCUTTLEWIRE_ALLOW_NETWORKS", value_name = "CIDR,...", value_parser = parse_networks)]
    pub allow_networks: Vec<Networks>,

    /// Hold at most this many members, this node included (dead and
    /// departed ones count until removed); newcomers beyond it are kept
    /// out, counted and logged once each; 0 for no limit [default: 0]
    #[arg(long, env = "SCUTTLEWIRE_MAX_MEMBERS", value_name = "N", value_parser = parse_max_members)]
    pub max_members: Option<usize>,

    /// State this node publishes from the start, comma-separated KEY=VALUE
    /// (a value cannot contain a comma)
    #[arg(long, env = "SCUTTLEWIRE_STATE", value_name = "KEY=VALUE,...", value_parser = parse_state)]
    pub state: Vec<StateItems>,

    /// Print events as one JSON object per line instead of readable lines
    /// (the variable: 1, true, yes or on; 0, false, no, off or empty for
    /// readable lines)
    #[arg(long, env = "SCUTTLEWIRE_JSON", value_parser = FalseyValueParser::new())]
    pub json: bool,

    /// Print a report of every member and the counters this often, e.g.
    /// 1s, 500ms, 2m; 0 turns it off [default: off]
    #[arg(long, env = "SCUTTLEWIRE_REPORT_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub report_interval: Option<Duration>,

    /// Serve the node's metrics for Prometheus over HTTP at this address
    /// (any path answers), e.g. 127.0.0.1:9100 [default: off]
    #[arg(long, env = "SCUTTLEWIRE_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Control socket for operator commands (`scuttlewire members`, `keys`,
    /// `leave`, ...), or `none` [default: $XDG_RUNTIME_DIR/scuttlewire/agent.sock;
    /// as root /run/scuttlewire/agent.sock; else /tmp/scuttlewire-UID/agent.sock]
    #[arg(long, env = "SCUTTLEWIRE_CONTROL", value_name = "PATH", value_parser = parse_control)]
    pub control: Option<ControlFlag>,

    /// Which logs reach stderr: a level (off, error, warn, info, debug,
    /// trace) and TARGET=LEVEL overrides, comma-separated
    #[arg(
        long,
        env = "SCUTTLEWIRE_LOG",
        value_name = "FILTER",
        default_value = DEFAULT_LOG,
        value_parser = LogFilter::parse
    )]
    pub log: LogFilter,
}

/// The `--preset` values, one per `Config` preset (their doc comments are
/// the `--help` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// A data centre or office network (Config::lan)
    Lan,
    /// Links across regions: slower, jitter-tolerant (Config::wan)
    Wan,
    /// Every node on one machine: fast timers, for trying things out (Config::local)
    Local,
}

impl Preset {
    /// The library's configuration for this preset.
    pub fn config(self) -> Config {
        match self {
            Preset::Lan => Config::lan(),
            Preset::Wan => Config::wan(),
            Preset::Local => Config::local(),
        }
    }
}

/// `--signatures`: off, sign or require.
fn parse_signatures(s: &str) -> Result<Signatures, String> {
    s.parse()
}

/// What `--identity-*` ask for (see [`AgentArgs::identity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFlags {
    /// The private key file (created when absent and uncertified).
    pub key: PathBuf,
    /// The key's certificate from the cluster CA.
    pub cert: Option<PathBuf>,
    /// The CA that vouches for members' identities; `None`: trust on
    /// first use.
    pub ca: Option<PathBuf>,
}

/// The `--cipher` values, named as the ciphers' specifications do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CipherName {
    /// AES-256-GCM: fastest with AES hardware (most servers)
    #[value(name = "aes-256-gcm")]
    Aes256Gcm,
    /// ChaCha20-Poly1305: fast without AES hardware
    #[value(name = "chacha20-poly1305")]
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305: ChaCha20-Poly1305 with an extended nonce
    #[value(name = "xchacha20-poly1305")]
    XChaCha20Poly1305,
}

impl From<CipherName> for Cipher {
    fn from(name: CipherName) -> Cipher {
        match name {
            CipherName::Aes256Gcm => Cipher::Aes256Gcm,
            CipherName::ChaCha20Poly1305 => Cipher::ChaCha20Poly1305,
            CipherName::XChaCha20Poly1305 => Cipher::XChaCha20Poly1305,
        }
    }
}

/// How the node's datagrams travel, from `--key-file` and `--quic-*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Plain UDP.
    Plain,
    /// UDP sealed with the key in `key_file`.
    Encrypted {
        /// `--key-file`.
        key_file: PathBuf,
        /// `--cipher`, or the default.
        cipher: Cipher,
    },
    /// QUIC with mutual TLS.
    Quic {
        /// `--quic-ca`.
        ca: PathBuf,
        /// `--quic-cert`.
        cert: PathBuf,
        /// `--quic-key`.
        key: PathBuf,
    },
}

impl AgentArgs {
    /// The node name: `--name`, else the host name, else empty (the library
    /// then names the node after its address). An empty `--name` counts as
    /// absent.
    pub fn node_name(&self) -> String {
        self.name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(host_name)
    }

    /// The advertised address, if one was given: `--advertise` with the
    /// port of `--bind` when it has none.
    pub fn advertise_addr(&self) -> Result<Option<SocketAddr>, Failure> {
        match self.advertise {
            None | Some(Advertise::Unset) => Ok(None),
            Some(Advertise::Addr(addr)) => Ok(Some(addr)),
            Some(Advertise::Ip(_)) if self.bind.port() == 0 => Err(Failure::flag(
                "--advertise",
                "give IP:PORT when --bind has port 0 (the port is not known in advance)",
            )),
            Some(Advertise::Ip(ip)) => Ok(Some(SocketAddr::new(ip, self.bind.port()))),
        }
    }

    /// The `--discovery*` flags as the library's settings; `None` without
    /// `--discovery`. Refuses the other discovery flags without it, and
    /// out-of-range values naming the flag.
    pub fn discovery(&self) -> Result<Option<Discovery>, Failure> {
        if !self.discovery {
            let given = [
                ("--discovery-group", self.discovery_group.is_some()),
                ("--discovery-port", self.discovery_port.is_some()),
                ("--discovery-interval", self.discovery_interval.is_some()),
            ];
            return match given.iter().find(|(_, set)| *set) {
                Some((flag, _)) => Err(Failure::flag(flag, "only applies with --discovery")),
                None => Ok(None),
            };
        }
        let mut d = Discovery::lan();
        if let Some(group) = self.discovery_group {
            d = d.with_group(group);
        }
        if let Some(port) = self.discovery_port {
            d = d.with_port(port);
        }
        if let Some(interval) = self.discovery_interval {
            d = d.with_interval(interval);
        }
        d.validate().map_err(|e| {
            let flag = match e.field {
                "discovery.group" => "--discovery-group",
                "discovery.port" => "--discovery-port",
                _ => "--discovery-interval",
            };
            Failure::flag(flag, e.reason)
        })?;
        Ok(Some(d))
    }

    /// How often to print a report; `None` when off (absent or 0).
    pub fn report_every(&self) -> Option<Duration> {
        self.report_interval.filter(|d| !d.is_zero())
    }

    /// Every `--seeds` entry, in order.
    pub fn seed_hosts(&self) -> Vec<String> {
        self.seeds
            .iter()
            .flat_map(|s| s.0.iter().cloned())
            .collect()
    }

    /// The node's configuration: `--preset` with `--cluster`, the node
    /// name, `--allow-networks` and `--max-members`.
    pub fn config(&self) -> Config {
        let mut config = self
            .preset
            .config()
            .with_cluster(self.cluster.as_str())
            .with_name(self.node_name());
        config.allowed_networks = self
            .allow_networks
            .iter()
            .flat_map(|n| n.0.iter().copied())
            .collect();
        config.max_members = self.max_members.unwrap_or(0);
        config
    }

    /// Every `--state` pair, in order (a repeated key: the last one wins).
    pub fn state_items(&self) -> Vec<(String, String)> {
        self.state
            .iter()
            .flat_map(|s| s.0.iter().cloned())
            .collect()
    }

    /// The signed-state identity the flags ask for: `None` with
    /// `--signatures off`. Refuses, naming the flag, an identity flag
    /// without signatures, signatures without `--identity-key`, and a
    /// certificate with no CA to check members' against.
    pub fn identity(&self) -> Result<Option<IdentityFlags>, Failure> {
        if !self.signatures.signs() {
            let given = [
                ("--identity-key", &self.identity_key),
                ("--identity-cert", &self.identity_cert),
                ("--identity-ca", &self.identity_ca),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, p)| p.is_some()) {
                return Err(Failure::flag(
                    flag,
                    "only applies to signed state; give --signatures sign or require too",
                ));
            }
            return Ok(None);
        }
        let Some(key) = self.identity_key.clone() else {
            return Err(Failure::flag(
                "--signatures",
                format!("{} needs --identity-key", self.signatures),
            ));
        };
        let ca = self.identity_ca.clone().or_else(|| self.quic_ca.clone());
        if self.identity_cert.is_some() && ca.is_none() {
            return Err(Failure::flag(
                "--identity-ca",
                "--identity-cert needs the CA that checks members' certificates (or --quic-ca)",
            ));
        }
        Ok(Some(IdentityFlags {
            key,
            cert: self.identity_cert.clone(),
            ca,
        }))
    }

    /// The transport the flags ask for; refuses half a QUIC set-up, QUIC
    /// with `--key-file`, and `--cipher` without `--key-file`.
    pub fn security(&self) -> Result<Security, Failure> {
        let quic = [
            ("--quic-ca", &self.quic_ca),
            ("--quic-cert", &self.quic_cert),
            ("--quic-key", &self.quic_key),
        ];
        let given = quic.iter().filter(|(_, p)| p.is_some()).count();
        if given > 0 && given < quic.len() {
            let missing: Vec<&str> = quic
                .iter()
                .filter(|(_, p)| p.is_none())
                .map(|(f, _)| *f)
                .collect();
            return Err(Failure::flag(
                missing[0],
                format!(
                    "QUIC needs --quic-ca, --quic-cert and --quic-key together; missing {}",
                    missing.join(" and ")
                ),
            ));
        }
        match (
            &self.key_file,
            &self.quic_ca,
            &self.quic_cert,
            &self.quic_key,
        ) {
            (Some(_), Some(_), ..) => Err(Failure::flag(
                "--key-file",
                "cannot be combined with QUIC (--quic-*), which encrypts with TLS already",
            )),
            (Some(key_file), ..) => Ok(Security::Encrypted {
                key_file: key_file.clone(),
                cipher: self.cipher.map(Cipher::from).unwrap_or_default(),
            }),
            (None, ..) if self.cipher.is_some() => Err(Failure::flag(
                "--cipher",
                "only applies to encrypted UDP; give --key-file too",
            )),
            (None, Some(ca), Some(cert), Some(key)) => Ok(Security::Quic {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => Ok(Security::Plain),
        }
    }
}

/// This host's name: `/proc/sys/kernel/hostname` (Linux), else `$HOSTNAME`,
/// else empty.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> AgentArgs {
        use clap::{Command, FromArgMatches};
        let cmd = AgentArgs::augment_args(Command::new("agent"));
        let matches = cmd
            .try_get_matches_from(std::iter::once("agent").chain(extra.iter().copied()))
            .unwrap();
        AgentArgs::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn an_advertised_ip_takes_the_bind_port() {
        let a = args(&["--bind", "0.0.0.0:7000", "--advertise", "10.0.0.1"]);
        assert_eq!(
            a.advertise_addr().unwrap(),
            Some("10.0.0.1:7000".parse().unwrap())
        );
        let a = args(&["--bind", "127.0.0.1:0", "--advertise", "127.0.0.1"]);
        assert!(
            a.advertise_addr()
                .unwrap_err()
                .to_string()
                .starts_with("--advertise:")
        );
    }

    #[test]
    fn identity_flags_go_together_and_name_the_one_missing() {
        assert_eq!(args(&[]).identity().unwrap(), None);
        let err = |a: &[&str]| args(a).identity().unwrap_err().to_string();
        assert!(err(&["--identity-key", "k.pem"]).starts_with("--identity-key:"));
        assert!(err(&["--signatures", "require"]).starts_with("--signatures:"));
        assert!(
            err(&[
                "--signatures",
                "sign",
                "--identity-key",
                "k",
                "--identity-cert",
                "c"
            ])
            .starts_with("--identity-ca:")
        );
        let tofu = args(&["--signatures", "sign", "--identity-key", "k"]);
        assert_eq!(
            tofu.identity().unwrap(),
            Some(IdentityFlags {
                key: "k".into(),
                cert: None,
                ca: None
            })
        );
        // The QUIC CA vouches for identities unless another is named.
        let quic = args(&[
            "--signatures",
            "require",
            "--identity-key",
            "k",
            "--identity-cert",
            "c",
            "--quic-ca",
            "ca.pem",
        ]);
        assert_eq!(quic.identity().unwrap().unwrap().ca, Some("ca.pem".into()));
        let bad = AgentArgs::augment_args(clap::Command::new("agent"))
            .try_get_matches_from(["agent", "--signatures", "maybe"])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("--signatures"), "{bad}");
    }

    #[test]
    fn repeated_seeds_and_state_flags_add_up() {
        let a = args(&[
            "--seeds", "a:1,b:2", "--seeds", "c:3", "--state", "x=1", "--state", "y=2",
        ]);
        assert_eq!(a.seed_hosts(), ["a:1", "b:2", "c:3"]);
        assert_eq!(
            a.state_items(),
            [("x".into(), "1".into()), ("y".into(), "2".into())]
        );
    }

    #[test]
    fn admission_flags_reach_the_config() {
        let c = args(&[]).config();
        assert!(c.allowed_networks.is_empty());
        assert_eq!(c.max_members, 0);
        let c = args(&[
            "--allow-networks",
            "10.0.0.0/8,fd00::/8",
            "--allow-networks",
            "192.168.0.0/16",
            "--max-members",
            "50",
        ])
        .config();
        let nets: Vec<String> = c.allowed_networks.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "fd00::/8", "192.168.0.0/16"]);
        assert_eq!(c.max_members, 50);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn bad_admission_flags_are_refused_naming_the_flag() {
        use clap::{Command, FromArgMatches};
        for (flags, flag) in [
            (["--allow-networks", "10.0.0.1/8"], "--allow-networks"),
            (["--allow-networks", "10.0.0.0/40"], "--allow-networks"),
            (["--max-members", "1"], "--max-members"),
            (["--max-members", "many"], "--max-members"),
        ] {
            let cmd = AgentArgs::augment_args(Command::new("agent"));
            let err = cmd
                .try_get_matches_from(std::iter::once("agent").chain(flags))
                .map(|m| AgentArgs::from_arg_matches(&m))
                .unwrap_err()
                .to_string();
            assert!(err.contains(flag), "{flags:?}: {err}");
        }
    }

    #[test]
    fn discovery_flags_build_the_settings_and_refuse_nonsense() {
        assert_eq!(args(&[]).discovery().unwrap(), None);
        assert_eq!(
            args(&["--discovery"]).discovery().unwrap(),
            Some(Discovery::lan())
        );
        let d = args(&[
            "--discovery",
            "--discovery-group",
            "239.1.2.3",
            "--discovery-port",
            "9000",
            "--discovery-interval",
            "500ms",
        ])
        .discovery()
        .unwrap()
        .unwrap();
        assert_eq!(d.group, Some("239.1.2.3".parse().unwrap()));
        assert_eq!(d.port, 9000);
        assert_eq!(d.interval, Duration::from_millis(500));
        assert_eq!(d.alone_interval, Duration::from_millis(500));
        for (flags, flag) in [
            (&["--discovery-port", "9000"][..], "--discovery-port:"),
            (
                &["--discovery", "--discovery-group", "10.0.0.1"],
                "--discovery-group:",
            ),
            (
                &["--discovery", "--discovery-port", "0"],
                "--discovery-port:",
            ),
            (
                &["--discovery", "--discovery-interval", "10ms"],
                "--discovery-interval:",
            ),
        ] {
            let err = args(flags).discovery().unwrap_err().to_string();
            assert!(err.starts_with(flag), "{flags:?}: {err}");
        }
    }

    #[test]
    fn transports_are_chosen_and_contradictions_refused() {
        assert_eq!(args(&[]).security().unwrap(), Security::Plain);
        assert_eq!(
            args(&["--key-file", "k", "--cipher", "xchacha20-poly1305"])
                .security()
                .unwrap(),
            Security::Encrypted {
                key_file: "k".into(),
                cipher: Cipher::XChaCha20Poly1305
            }
        );
        let quic = ["--quic-ca", "ca", "--quic-cert", "c", "--quic-key", "k"];
        assert!(matches!(
            args(&quic).security().unwrap(),
            Security::Quic { .. }
        ));
        let err = args(&quic[..4]).security().unwrap_err().to_string();
        assert!(err.starts_with("--quic-key:"), "{err}");
        let err = args(&[&quic[..], &["--key-file", "k"]].concat())
            .security()
            .unwrap_err();
        assert!(err.to_string().starts_with("--key-file:"), "{err}");
        let err = args(&["--cipher", "aes-256-gcm"]).security().unwrap_err();
        assert!(err.to_string().starts_with("--cipher:"), "{err}");
    }
}
