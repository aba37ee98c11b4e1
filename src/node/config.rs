//! A node's settings, with the defaults an operator gets when a flag is absent.

use super::wire::{DEFAULT_MAX_FRAME, MAX_HELLO_FIELD};
use crate::raft::message::NodeId;
use crate::raft::CoreConfig;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How the leader makes sure a read is not stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// A heartbeat round answered by a majority per batch of reads (§6.4 of
    /// the Raft dissertation). Safe under any clock behaviour.
    ReadIndex,
    /// No round while the leader's lease holds: a majority answered a round
    /// that began less than the minimum election timeout (less 10%) ago.
    /// Assumes clocks on different nodes run at rates within 10% of each other
    /// and that a paused process is not resumed believing its lease still
    /// holds; faster, but not safe if those assumptions break.
    Lease,
}

impl std::fmt::Display for ReadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadMode::ReadIndex => "read-index",
            ReadMode::Lease => "lease",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    /// Nodes refuse peers that name another cluster in their handshake.
    pub cluster_id: String,
    pub data_dir: PathBuf,
    /// Where this node listens for its peers.
    pub raft_addr: String,
    /// Where *this* node dials other nodes, by id. When the data dir is new,
    /// these are also the other members of the cluster the node forms (the
    /// bootstrap configuration); after that membership comes from the data
    /// dir, and these only override the configuration's addresses (a proxy
    /// per link, say).
    pub peers: BTreeMap<NodeId, String>,
    /// A new data dir joins an existing cluster instead of forming one: it
    /// starts with no configuration and waits for a leader to add it.
    pub join: bool,
    /// The address clients reach this node at, if it serves clients. Sent to
    /// peers in the connection handshake, so that any node can redirect
    /// clients to the leader with no further configuration.
    pub client_addr: Option<String>,
    /// One logical tick of the core.
    pub tick: Duration,
    /// The election timeout is drawn uniformly from this range (§5.2).
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    pub heartbeat_interval: Duration,
    /// The largest peer frame accepted or sent.
    pub max_frame: usize,
    /// The most entry bytes one AppendEntries carries.
    pub max_append_bytes: usize,
    /// How long a write waits to be committed and applied before it is
    /// answered with a timeout (outcome unknown).
    pub proposal_timeout: Duration,
    /// Bounds on connecting to a peer and on one blocked write or handshake.
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    /// Pre-vote (§9.6 of the dissertation): on by default.
    pub pre_vote: bool,
    /// Check-quorum and leader stickiness: on by default.
    pub check_quorum: bool,
    pub read_mode: ReadMode,
    /// Take a snapshot after this many entries have been applied since the
    /// last one (§7); 0 turns automatic snapshots off.
    pub snapshot_entries: u64,
    /// Entries kept in the log before a snapshot's last included index, for
    /// followers only slightly behind.
    pub snapshot_keep: u64,
    /// The largest piece of a snapshot sent in one message.
    pub snapshot_chunk_bytes: usize,
}

impl Config {
    /// A single-node configuration with the defaults: election timeout
    /// 150–300 ms, heartbeat 50 ms, tick 10 ms, 16 MiB frames.
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>) -> Config {
        Config {
            id,
            cluster_id: "raftnode".to_string(),
            data_dir: data_dir.into(),
            raft_addr: "127.0.0.1:0".to_string(),
            peers: BTreeMap::new(),
            join: false,
            client_addr: None,
            tick: Duration::from_millis(10),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            heartbeat_interval: Duration::from_millis(50),
            max_frame: DEFAULT_MAX_FRAME,
            max_append_bytes: 1024 * 1024,
            proposal_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(500),
            io_timeout: Duration::from_secs(2),
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::ReadIndex,
            snapshot_entries: 10_000,
            snapshot_keep: 5_000,
            snapshot_chunk_bytes: 1024 * 1024,
        }
    }

    /// The largest command a client may propose: an entry must always fit in a
    /// frame, or no follower could ever receive it.
    pub fn max_command_bytes(&self) -> usize {
        self.max_frame.saturating_sub(64 * 1024)
    }

    /// Checks the settings and converts the timings into ticks for the core.
    pub fn core_config(&self) -> Result<CoreConfig, ConfigError> {
        if self.tick.is_zero() {
            return Err(ConfigError::ZeroTick);
        }
        let ticks = |d: Duration| -> u32 {
            let t = d.as_nanos().div_ceil(self.tick.as_nanos());
            u32::try_from(t).unwrap_or(u32::MAX).max(1)
        };
        let (min, max) = (
            ticks(self.election_timeout_min),
            ticks(self.election_timeout_max),
        );
        let heartbeat = ticks(self.heartbeat_interval);
        if min > max {
            return Err(ConfigError::ElectionTimeoutRange {
                min: self.election_timeout_min,
                max: self.election_timeout_max,
            });
        }
        if heartbeat >= min {
            return Err(ConfigError::HeartbeatTooLong {
                heartbeat: self.heartbeat_interval,
                election_timeout_min: self.election_timeout_min,
            });
        }
        if self.peers.contains_key(&self.id) {
            return Err(ConfigError::ListsItself { id: self.id });
        }
        if self.read_mode == ReadMode::Lease && !self.check_quorum {
            return Err(ConfigError::LeaseWithoutCheckQuorum);
        }
        // An AppendEntries holds up to max_append_bytes of entries (as
        // `Entry::size` counts them, never less than encoded) or one entry
        // up to `max_command_bytes`, plus its own fields: it must fit a frame.
        if self.max_append_bytes.saturating_add(64 * 1024) > self.max_frame {
            return Err(ConfigError::AppendLargerThanFrame);
        }
        if self.snapshot_chunk_bytes == 0
            || self.snapshot_chunk_bytes.saturating_add(64 * 1024) > self.max_frame
        {
            return Err(ConfigError::SnapshotChunkSize);
        }
        // They travel in the handshake, whose frame is small (see `wire`).
        let strings = [
            ("cluster id", Some(&self.cluster_id)),
            ("raft address", Some(&self.raft_addr)),
            ("client address", self.client_addr.as_ref()),
        ];
        for (what, value) in strings {
            let len = value.map_or(0, String::len);
            if len > MAX_HELLO_FIELD {
                return Err(ConfigError::TooLong { what, len });
            }
        }
        let mut core = CoreConfig::new(self.id, self.peers.keys().copied().collect());
        core.election_ticks_min = min;
        core.election_ticks_max = max;
        core.heartbeat_ticks = heartbeat;
        core.max_append_bytes = self.max_append_bytes;
        core.seed = rand::random();
        core.pre_vote = self.pre_vote;
        core.check_quorum = self.check_quorum;
        core.lease_reads = self.read_mode == ReadMode::Lease;
        core.snapshot_keep = self.snapshot_keep;
        Ok(core)
    }
}

/// Settings that contradict each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    ZeroTick,
    ElectionTimeoutRange {
        min: Duration,
        max: Duration,
    },
    /// Heartbeats must come more often than elections time out, or followers
    /// would start elections under a healthy leader (§5.6).
    HeartbeatTooLong {
        heartbeat: Duration,
        election_timeout_min: Duration,
    },
    ListsItself {
        id: NodeId,
    },
    /// Leases are only sound while followers refuse to vote in a live
    /// leader's lease, which is what check-quorum's stickiness does.
    LeaseWithoutCheckQuorum,
    /// An AppendEntries must fit in a frame.
    AppendLargerThanFrame,
    /// A snapshot chunk must be positive and fit in a frame.
    SnapshotChunkSize,
    /// The cluster id or an address is longer than a handshake carries.
    TooLong {
        what: &'static str,
        len: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroTick => f.write_str("tick must be positive"),
            ConfigError::ElectionTimeoutRange { min, max } => write!(
                f,
                "election timeout minimum {min:?} exceeds the maximum {max:?}"
            ),
            ConfigError::HeartbeatTooLong {
                heartbeat,
                election_timeout_min,
            } => write!(
                f,
                "heartbeat interval {heartbeat:?} must be shorter than the election timeout {election_timeout_min:?}"
            ),
            ConfigError::ListsItself { id } => write!(f, "node {id} lists itself as a peer"),
            ConfigError::LeaseWithoutCheckQuorum => f.write_str(
                "lease reads need check-quorum (followers must not vote while a leader's lease may hold)",
            ),
            ConfigError::AppendLargerThanFrame => {
                f.write_str("max_append_bytes must be at least 64 KiB below max_frame")
            }
            ConfigError::SnapshotChunkSize => f.write_str(
                "snapshot_chunk_bytes must be positive and at least 64 KiB below max_frame",
            ),
            ConfigError::TooLong { what, len } => write!(
                f,
                "the {what} is {len} bytes long; at most {MAX_HELLO_FIELD} are allowed"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::node::wire;
    use crate::raft::membership::Configuration;
    use crate::raft::message::{Entry, Envelope, Member, Message, Payload, Removal, Suffrage};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random_entry(rng: &mut StdRng) -> Entry {
        // Integers of every encoded width, up to the widest.
        let int = |rng: &mut StdRng| match rng.gen_range(0..3) {
            0 => rng.gen_range(0..250),
            1 => rng.gen(),
            _ => u64::MAX,
        };
        let text = |rng: &mut StdRng| "x".repeat(rng.gen_range(0..300));
        let payload = match rng.gen_range(0..3) {
            0 => Payload::Noop,
            1 => Payload::Command(vec![7; rng.gen_range(0..64)]),
            _ => {
                let mut config = Configuration::default();
                for _ in 0..rng.gen_range(0..8) {
                    let member = Member {
                        raft_addr: text(rng),
                        client_addr: rng.gen::<bool>().then(|| text(rng)),
                        suffrage: if rng.gen() {
                            Suffrage::Voter
                        } else {
                            Suffrage::Learner
                        },
                        auto_promote: rng.gen(),
                        incarnation: rng.gen::<bool>().then(|| int(rng)),
                    };
                    config.members.insert(int(rng), member);
                }
                for _ in 0..rng.gen_range(0..8) {
                    let removal = Removal {
                        index: int(rng),
                        incarnation: rng.gen::<bool>().then(|| int(rng)),
                    };
                    config.removed.insert(int(rng), removal);
                }
                Payload::Config(config)
            }
        };
        Entry {
            index: int(rng),
            term: int(rng),
            payload,
        }
    }

    /// `Entry::size` is never below an entry's encoded size, whatever the
    /// widths of its integers and the lengths of its addresses.
    #[test]
    fn entry_size_bounds_its_encoded_size() {
        let mut rng = StdRng::seed_from_u64(12);
        for _ in 0..5000 {
            let entry = random_entry(&mut rng);
            let encoded = codec::encode(&entry).unwrap().len();
            assert!(
                encoded <= entry.size(),
                "{encoded} > {}: {entry:?}",
                entry.size()
            );
        }
    }

    /// The worst batch the settings allow — `max_append_bytes` of the
    /// smallest entries with the widest integers, or one entry of
    /// `max_command_bytes` — fits a frame. (A frame over the limit is never
    /// sent, and the follower would wait for entries that never come.)
    #[test]
    fn the_largest_append_entries_fits_a_frame() {
        let mut config = Config::new(1, "unused");
        config.max_frame = 1024 * 1024;
        config.snapshot_chunk_bytes = 64 * 1024;
        config.max_append_bytes = config.max_frame - 64 * 1024;
        assert!(config.core_config().is_ok());
        config.max_append_bytes += 1;
        assert!(config.core_config().is_err());
        config.max_append_bytes -= 1;
        let noop = |index| Entry {
            index,
            term: u64::MAX,
            payload: Payload::Noop,
        };
        let mut entries = Vec::new();
        let mut bytes = 0;
        while bytes + noop(u64::MAX).size() <= config.max_append_bytes {
            bytes += noop(u64::MAX).size();
            entries.push(noop(u64::MAX - 1 - entries.len() as u64));
        }
        let big = Entry {
            index: u64::MAX,
            term: u64::MAX,
            payload: Payload::Command(vec![0; config.max_command_bytes()]),
        };
        for entries in [entries, vec![big]] {
            let append = Envelope {
                from: u64::MAX,
                to: u64::MAX,
                term: u64::MAX,
                message: Message::AppendEntries {
                    prev_log_index: u64::MAX,
                    prev_log_term: u64::MAX,
                    entries,
                    leader_commit: u64::MAX,
                    round: u64::MAX,
                },
            };
            let mut buf = Vec::new();
            wire::encode_frame(&append, config.max_frame, &mut buf).unwrap();
        }
    }

    #[test]
    fn strings_a_handshake_carries_are_bounded() {
        let mut config = Config::new(1, "/nonexistent");
        assert!(config.core_config().is_ok());
        config.client_addr = Some(format!("{}:7001", "h".repeat(MAX_HELLO_FIELD)));
        let err = config.core_config().unwrap_err();
        assert!(matches!(
            err,
            ConfigError::TooLong {
                what: "client address",
                ..
            }
        ));
        assert!(err.to_string().contains("at most 512"), "{err}");
        config.client_addr = None;
        config.cluster_id = "c".repeat(MAX_HELLO_FIELD);
        assert!(config.core_config().is_ok());
    }
}
