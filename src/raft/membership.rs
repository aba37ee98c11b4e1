//! Cluster membership (chapter 4 of the dissertation): who the members are,
//! which of them vote, and how one configuration becomes the next.
//!
//! # The method: one server at a time (§4.1)
//!
//! A configuration changes by a log entry ([`Payload::Config`](super::message::Payload::Config))
//! that carries the whole new configuration. Each change adds or removes at
//! most one *voter*, so any majority of the old voters and any majority of
//! the new ones share a server: the two can never decide independently,
//! whichever of them is in force on a given server. That is why, unlike
//! joint consensus (§4.3), no intermediate configuration is needed.
//!
//! * **In force on append.** A server uses the latest configuration in its
//!   log, committed or not (§4.1); if a conflicting leader's entries
//!   truncate that entry away, the server falls back to the previous one
//!   ([`ConfigLog::truncate_after`]). So a change that was not committed
//!   when its leader failed is either finished by the next leader (it holds
//!   the entry and commits it with its own first entry) or cleanly abandoned
//!   (it does not, and the entry is truncated everywhere).
//! * **One at a time.** A leader proposes a change only when the previous
//!   configuration entry is committed.
//! * **The single-server bug's fix** (§4.1, and Ongaro's raft-dev post of
//!   2015): a new leader proposes no change until it has committed an entry
//!   of its own term. Without this, two leaders of successive terms could
//!   each append a different one-server change to a log the other never saw,
//!   and the two resulting configurations need not overlap.
//! * **Learners** (non-voting members, §4.2.1) receive the log and
//!   snapshots but never vote, never campaign and are never counted towards
//!   a commit, a read round or check-quorum. Adding a learner changes no
//!   majority; a new server is added as one and *promoted* once it has caught
//!   up, so that it cannot stall commitment while it copies the log.
//! * **Removing the leader** (§4.2.2): it goes on leading — replicating,
//!   committing — but no longer counts itself in majorities; once the entry
//!   that removes it is committed it steps down.
//!
//! Besides voters and learners a configuration records, for each member,
//! where it listens for peers and clients, and the *incarnation* of its data
//! dir (a random id drawn when the dir was initialized). A server whose data
//! dir was wiped has forgotten its votes and log; if it rejoined under its
//! old id it could help elect a leader lacking committed entries, so a member
//! that presents another incarnation than the one recorded is refused.
//! Removed ids are remembered too, so that a removed server that calls back
//! is told it was removed.

pub use super::message::{Configuration, Member, Removal, Suffrage};
use super::message::{Index, NodeId};
use std::collections::BTreeMap;
use std::fmt;

impl Member {
    /// A voter with nothing else known about it.
    pub fn voter(raft_addr: impl Into<String>) -> Member {
        Member {
            raft_addr: raft_addr.into(),
            client_addr: None,
            suffrage: Suffrage::Voter,
            auto_promote: false,
            incarnation: None,
        }
    }

    pub fn is_voter(&self) -> bool {
        self.suffrage == Suffrage::Voter
    }
}

/// The most removed ids a configuration remembers (the oldest are
/// forgotten first), so that the configuration stays small however many
/// servers have come and gone.
pub const REMEMBERED_REMOVALS: usize = 256;

/// A change an operator (or the leader itself) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfChange {
    /// A new member, as a learner; `auto_promote` makes the leader promote
    /// it once it has caught up.
    AddLearner {
        id: NodeId,
        raft_addr: String,
        client_addr: Option<String>,
        auto_promote: bool,
    },
    /// A learner becomes a voter.
    Promote { id: NodeId },
    /// A member (voter or learner) leaves.
    Remove { id: NodeId },
    /// Records the incarnation of a member's data dir.
    RecordIncarnation { id: NodeId, incarnation: u64 },
}

impl fmt::Display for ConfChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfChange::AddLearner {
                id,
                raft_addr,
                auto_promote,
                ..
            } => {
                let then = if *auto_promote {
                    ", promoted once caught up"
                } else {
                    ""
                };
                write!(f, "add {id} at {raft_addr} as a learner{then}")
            }
            ConfChange::Promote { id } => write!(f, "promote {id} to voter"),
            ConfChange::Remove { id } => write!(f, "remove {id}"),
            ConfChange::RecordIncarnation { id, incarnation } => {
                write!(f, "record incarnation {incarnation:016x} for {id}")
            }
        }
    }
}

/// Why a change cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// Only the leader changes the configuration; this is who it is, if
    /// known.
    NotLeader(Option<NodeId>),
    /// Another change is not yet committed, the leader has not yet
    /// committed an entry of its term, or leadership is being transferred:
    /// try again shortly.
    InProgress(&'static str),
    UnknownNode(NodeId),
    DuplicateId(NodeId),
    /// The address is already used by another member.
    DuplicateAddress {
        addr: String,
        id: NodeId,
    },
    AlreadyVoter(NodeId),
    /// The cluster would have no voter left.
    LastVoter(NodeId),
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::NotLeader(_) => f.write_str("not the leader"),
            ChangeError::InProgress(why) => f.write_str(why),
            ChangeError::UnknownNode(id) => write!(f, "node {id} is not a member"),
            ChangeError::DuplicateId(id) => write!(f, "node {id} is already a member"),
            ChangeError::DuplicateAddress { addr, id } => {
                write!(f, "address {addr} is already used by node {id}")
            }
            ChangeError::AlreadyVoter(id) => write!(f, "node {id} is already a voter"),
            ChangeError::LastVoter(id) => {
                write!(f, "node {id} is the last voter; the cluster cannot lose it")
            }
        }
    }
}

impl std::error::Error for ChangeError {}

impl Configuration {
    /// A configuration of voters, with the given raft addresses.
    pub fn of_voters(voters: impl IntoIterator<Item = (NodeId, String)>) -> Configuration {
        Configuration {
            members: voters
                .into_iter()
                .map(|(id, addr)| (id, Member::voter(addr)))
                .collect(),
            removed: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.members.contains_key(&id)
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.members.get(&id).is_some_and(Member::is_voter)
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.members.get(&id).is_some_and(|m| !m.is_voter())
    }

    /// The voters, in ascending order.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| m.is_voter())
            .map(|(&id, _)| id)
    }

    /// The learners, in ascending order.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| !m.is_voter())
            .map(|(&id, _)| id)
    }

    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// The configuration `change` makes of this one, as the entry at
    /// `index`. At most one voter is added or removed (§4.1).
    pub fn apply(&self, change: &ConfChange, index: Index) -> Result<Configuration, ChangeError> {
        let mut next = self.clone();
        match change {
            ConfChange::AddLearner {
                id,
                raft_addr,
                client_addr,
                auto_promote,
            } => {
                if self.contains(*id) {
                    return Err(ChangeError::DuplicateId(*id));
                }
                for (&other, m) in &self.members {
                    let used = m.raft_addr == *raft_addr
                        || (client_addr.is_some() && m.client_addr == *client_addr);
                    if used {
                        let addr = if m.raft_addr == *raft_addr {
                            raft_addr.clone()
                        } else {
                            client_addr.clone().unwrap_or_default()
                        };
                        return Err(ChangeError::DuplicateAddress { addr, id: other });
                    }
                }
                next.removed.remove(id);
                next.members.insert(
                    *id,
                    Member {
                        raft_addr: raft_addr.clone(),
                        client_addr: client_addr.clone(),
                        suffrage: Suffrage::Learner,
                        auto_promote: *auto_promote,
                        incarnation: None,
                    },
                );
            }
            ConfChange::Promote { id } => {
                let member = next
                    .members
                    .get_mut(id)
                    .ok_or(ChangeError::UnknownNode(*id))?;
                if member.is_voter() {
                    return Err(ChangeError::AlreadyVoter(*id));
                }
                member.suffrage = Suffrage::Voter;
                member.auto_promote = false;
            }
            ConfChange::Remove { id } => {
                if !self.contains(*id) {
                    return Err(ChangeError::UnknownNode(*id));
                }
                if self.is_voter(*id) && self.voter_count() == 1 {
                    return Err(ChangeError::LastVoter(*id));
                }
                let removed = next.members.remove(id);
                let incarnation = removed.and_then(|m| m.incarnation);
                next.removed.insert(*id, Removal { index, incarnation });
                while next.removed.len() > REMEMBERED_REMOVALS {
                    let oldest = next.removed.iter().min_by_key(|(_, r)| r.index);
                    let Some((&oldest, _)) = oldest else { break };
                    next.removed.remove(&oldest);
                }
            }
            ConfChange::RecordIncarnation { id, incarnation } => {
                let member = next
                    .members
                    .get_mut(id)
                    .ok_or(ChangeError::UnknownNode(*id))?;
                member.incarnation = Some(*incarnation);
            }
        }
        Ok(next)
    }

    /// Whether the node `id`, whose data dir has `incarnation` (0: unknown),
    /// was removed from this configuration: the index of the entry that
    /// removed it. A node added back under a removed id has a new data dir,
    /// so a removal that recorded another incarnation is not its own.
    pub fn removal_of(&self, id: NodeId, incarnation: u64) -> Option<Index> {
        if self.contains(id) {
            return None;
        }
        let removal = self.removed.get(&id)?;
        match removal.incarnation {
            Some(recorded) if incarnation != 0 && recorded != incarnation => None,
            _ => Some(removal.index),
        }
    }

    /// One line for logs and INFO: `1,2,3 (learners 4)`.
    pub fn describe(&self) -> String {
        let join = |ids: Vec<NodeId>| {
            ids.iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let learners: Vec<NodeId> = self.learners().collect();
        let voters = join(self.voters().collect());
        match learners.is_empty() {
            true => format!("voters {voters}"),
            false => format!("voters {voters}, learners {}", join(learners)),
        }
    }
}

/// The configurations a server's log holds, oldest first: the one in force
/// at the log's compaction point (from the snapshot, or the cluster's
/// bootstrap), then one per configuration entry after it. The last is in
/// force (§4.1); the last at or below the commit index is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLog {
    /// Never empty; indexes strictly increase.
    configs: Vec<(Index, Configuration)>,
}

impl ConfigLog {
    /// Starts from the configuration in force at `index`.
    pub fn new(index: Index, base: Configuration) -> ConfigLog {
        ConfigLog {
            configs: vec![(index, base)],
        }
    }

    /// The configuration in force: the latest in the log.
    pub fn latest(&self) -> &Configuration {
        &self.latest_entry().1
    }

    /// The index of the entry that set the latest configuration (0 for a
    /// bootstrap configuration).
    pub fn latest_index(&self) -> Index {
        self.latest_entry().0
    }

    fn latest_entry(&self) -> &(Index, Configuration) {
        self.configs.last().expect("a config log is never empty")
    }

    /// The latest configuration at or below `index`, and where it was set.
    pub fn at(&self, index: Index) -> (Index, &Configuration) {
        let (i, c) = self
            .configs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .unwrap_or(&self.configs[0]);
        (*i, c)
    }

    /// A configuration entry was appended at `index` (a later one than any
    /// held, after any truncation).
    pub fn push(&mut self, index: Index, config: Configuration) {
        self.truncate_after(index.saturating_sub(1));
        self.configs.push((index, config));
    }

    /// Entries after `index` were removed from the log: their
    /// configurations no longer exist, and the previous one is in force
    /// again. The base is never dropped.
    pub fn truncate_after(&mut self, index: Index) {
        while self.configs.len() > 1 && self.latest_index() > index {
            self.configs.pop();
        }
    }

    /// The log was compacted through `index`: only the configuration in
    /// force there, and later ones, are still needed.
    pub fn compact(&mut self, index: Index) {
        let keep_from = self
            .configs
            .iter()
            .rposition(|(i, _)| *i <= index)
            .unwrap_or(0);
        self.configs.drain(..keep_from);
    }

    /// Replaces everything with the configuration in force at `index` (an
    /// installed snapshot replaced the log).
    pub fn reset(&mut self, index: Index, config: Configuration) {
        self.configs = vec![(index, config)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Configuration {
        Configuration::of_voters((1..=3).map(|id| (id, format!("h:{id}"))))
    }

    fn add(id: NodeId) -> ConfChange {
        ConfChange::AddLearner {
            id,
            raft_addr: format!("h:{id}"),
            client_addr: Some(format!("c:{id}")),
            auto_promote: true,
        }
    }

    #[test]
    fn changes_add_learners_promote_and_remove_one_voter_at_a_time() {
        let c = three().apply(&add(4), 10).unwrap();
        assert_eq!(c.voters().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(c.learners().collect::<Vec<_>>(), [4]);
        assert_eq!(c.describe(), "voters 1,2,3, learners 4");
        let c = c.apply(&ConfChange::Promote { id: 4 }, 11).unwrap();
        assert_eq!(c.voter_count(), 4);
        assert!(!c.members[&4].auto_promote);
        let c = c.apply(&ConfChange::Remove { id: 1 }, 12).unwrap();
        assert_eq!(c.voters().collect::<Vec<_>>(), [2, 3, 4]);
        let removal = Removal {
            index: 12,
            incarnation: None,
        };
        assert_eq!(c.removed, BTreeMap::from([(1, removal)]));
        // Adding it back forgets the removal.
        let c = c.apply(&add(1), 13).unwrap();
        assert!(c.removed.is_empty() && c.is_learner(1));
    }

    #[test]
    fn bad_changes_are_refused_with_the_reason() {
        let c = three();
        assert_eq!(c.apply(&add(2), 5), Err(ChangeError::DuplicateId(2)));
        let clash = ConfChange::AddLearner {
            id: 9,
            raft_addr: "h:3".into(),
            client_addr: None,
            auto_promote: false,
        };
        assert_eq!(
            c.apply(&clash, 5),
            Err(ChangeError::DuplicateAddress {
                addr: "h:3".into(),
                id: 3
            })
        );
        assert_eq!(
            c.apply(&ConfChange::Promote { id: 2 }, 5),
            Err(ChangeError::AlreadyVoter(2))
        );
        assert_eq!(
            c.apply(&ConfChange::Remove { id: 7 }, 5),
            Err(ChangeError::UnknownNode(7))
        );
        let one = Configuration::of_voters([(1, "h:1".to_string())]);
        assert_eq!(
            one.apply(&ConfChange::Remove { id: 1 }, 5),
            Err(ChangeError::LastVoter(1))
        );
    }

    #[test]
    fn removals_remembered_are_bounded() {
        let mut c = three();
        for id in 10..10 + REMEMBERED_REMOVALS as NodeId + 5 {
            c = c.apply(&add(id), id * 2).unwrap();
            c = c.apply(&ConfChange::Remove { id }, id * 2 + 1).unwrap();
        }
        assert_eq!(c.removed.len(), REMEMBERED_REMOVALS);
        assert!(!c.removed.contains_key(&10), "the oldest is forgotten");
    }

    #[test]
    fn the_config_log_falls_back_on_truncation_and_forgets_on_compaction() {
        let base = three();
        let four = base.apply(&add(4), 5).unwrap();
        let five = four.apply(&add(5), 9).unwrap();
        let mut log = ConfigLog::new(0, base.clone());
        log.push(5, four.clone());
        log.push(9, five.clone());
        assert_eq!(log.latest(), &five);
        assert_eq!(log.at(8), (5, &four));
        // §4.1: an uncommitted entry truncated away takes its configuration
        // with it.
        log.truncate_after(8);
        assert_eq!((log.latest_index(), log.latest()), (5, &four));
        log.truncate_after(0);
        assert_eq!(log.latest(), &base, "the base stays");
        log.push(5, four.clone());
        log.push(9, five.clone());
        log.compact(7);
        assert_eq!(log.at(7), (5, &four), "the one in force at 7 is kept");
        log.compact(100);
        assert_eq!(log.at(0), (9, &five));
        log.reset(50, base.clone());
        assert_eq!((log.latest_index(), log.latest()), (50, &base));
    }
}
