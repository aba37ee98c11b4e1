//! Membership changes (chapter 4 of the dissertation) and leadership
//! transfer (§3.10): every rule about who the members are, in one place. The
//! method — single-server changes in force on append, §4.1 — is explained in
//! [`crate::raft::membership`].
//!
//! * **Proposing** ([`RaftCore::propose_change`]): only a leader, only once
//!   it has committed an entry of its own term (the fix for the
//!   single-server bug), only when the previous configuration entry is
//!   committed, and never while leadership is being transferred.
//! * **In force on append.** Whoever appends a configuration entry — the
//!   leader proposing it, a follower accepting it — uses it at once; a
//!   follower whose configuration entry is truncated away falls back to the
//!   previous one. A leader keeps progress for every member, learners
//!   included, and for a while for a removed one, so that it hears it was
//!   removed.
//! * **Removal** (§4.2.2). A node learns it is out when a committed
//!   configuration no longer has it ([`Ready::removed`](crate::raft::Ready::removed));
//!   a leader that removed itself steps down then, first handing its
//!   leadership to the most up-to-date voter.
//! * **Automatic changes.** The leader records the incarnation of each
//!   member's data dir once it learns it, and promotes a learner added with
//!   auto-promotion once its log is within [`PROMOTE_MAX_LAG`] entries of
//!   the leader's.
//! * **Leadership transfer** (§3.10). The leader stops taking proposals,
//!   brings the target's log up to date, and sends it a TimeoutNow; the
//!   target campaigns at once, and its vote requests bypass pre-vote and
//!   leader stickiness. If the target has not won within an election
//!   timeout, the leader takes proposals again.

use super::{NotLeader, RaftCore, Role, RoleKind};
use crate::raft::membership::{ChangeError, ConfChange, Configuration};
use crate::raft::message::{Index, Message, NodeId, Payload, Term};
use crate::raft::progress::{Progress, ProgressState};
use log::{debug, info, warn};
use std::fmt;

/// A learner added with auto-promotion becomes a voter once its log matches
/// the leader's to within this many entries (and the leader is pipelining
/// to it, so it is receiving entries as they come): close enough that as a
/// voter it will keep up rather than hold commitment back.
pub const PROMOTE_MAX_LAG: Index = 256;

/// A leadership transfer under way (§3.10).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transfer {
    pub(crate) target: NodeId,
    /// Ticks since it began.
    elapsed: u32,
    timeout_now_sent: bool,
}

/// A command could not be proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader(NotLeader),
    /// The leader is handing its leadership to `target` and takes no
    /// proposals meanwhile (§3.10); retry shortly.
    Transferring {
        target: NodeId,
    },
}

impl From<NotLeader> for ProposeError {
    fn from(e: NotLeader) -> ProposeError {
        ProposeError::NotLeader(e)
    }
}

/// A leadership transfer could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferError {
    NotLeader(NotLeader),
    UnknownNode(NodeId),
    /// Only a voter can lead.
    NotAVoter(NodeId),
    /// A transfer to this node is under way already.
    InProgress(NodeId),
    /// No other voter to transfer to.
    NoTarget,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::NotLeader(_) => f.write_str("not the leader"),
            TransferError::UnknownNode(id) => write!(f, "node {id} is not a member"),
            TransferError::NotAVoter(id) => {
                write!(f, "node {id} is a learner; only a voter can lead")
            }
            TransferError::InProgress(id) => {
                write!(f, "a leadership transfer to {id} is under way")
            }
            TransferError::NoTarget => f.write_str("there is no other voter to transfer to"),
        }
    }
}

impl std::error::Error for TransferError {}

impl RaftCore {
    /// Proposes a membership change. On the leader the new configuration is
    /// appended, in force at once (§4.1), and its (index, term) returned:
    /// the change is done when that entry is committed.
    pub fn propose_change(&mut self, change: ConfChange) -> Result<(Index, Term), ChangeError> {
        self.change_allowed()?;
        let index = self.log.last_index() + 1;
        let next = self.configs.latest().apply(&change, index)?;
        info!(
            "node {}: proposing configuration change at {index}: {change} (now {})",
            self.config.id,
            next.describe()
        );
        self.append_own(Payload::Config(next));
        Ok((index, self.current_term))
    }

    /// Whether this node may propose a configuration change now.
    fn change_allowed(&self) -> Result<(), ChangeError> {
        let Role::Leader {
            reads, transfer, ..
        } = &self.role
        else {
            return Err(ChangeError::NotLeader(self.leader_id()));
        };
        if self.commit_index < reads.term_start() {
            // The single-server bug's fix (§4.1): an entry of this term
            // must commit first.
            return Err(ChangeError::InProgress(
                "the leader has not yet committed an entry of its term",
            ));
        }
        if self.configs.latest_index() > self.commit_index {
            return Err(ChangeError::InProgress(
                "another configuration change is not yet committed",
            ));
        }
        if transfer.is_some() {
            return Err(ChangeError::InProgress("leadership is being transferred"));
        }
        Ok(())
    }

    /// A configuration entry was appended to this node's log at `index`
    /// (by this leader, or from its leader): it is in force from now on.
    pub(super) fn config_appended(&mut self, index: Index, config: Configuration) {
        let previous = self.configs.latest().clone();
        self.configs.push(index, config);
        self.config_changed(Some(&previous));
    }

    /// Entries after `index` were truncated away: so were any
    /// configurations they set, and the previous one is in force again.
    pub(super) fn configs_truncated(&mut self, index: Index) {
        let before = self.configs.latest_index();
        self.configs.truncate_after(index);
        if self.configs.latest_index() != before {
            info!(
                "node {}: configuration entry {before} truncated away; back to the one of {} ({})",
                self.config.id,
                self.configs.latest_index(),
                self.configs.latest().describe()
            );
            self.config_changed(None);
        }
    }

    /// The configuration in force changed from `previous` (if known): tell
    /// the node, and as leader track the new members.
    pub(super) fn config_changed(&mut self, previous: Option<&Configuration>) {
        let latest = self.configs.latest().clone();
        info!(
            "node {}: configuration of entry {} in force: {}",
            self.config.id,
            self.configs.latest_index(),
            latest.describe()
        );
        self.ready.config = Some((self.configs.latest_index(), latest.clone()));
        // A member removed (and maybe added back with a new data dir) must
        // have its new incarnation recorded, not the one learnt before.
        self.incarnations.retain(|id, _| latest.contains(*id));
        let (id, next_index) = (self.config.id, self.log.last_index() + 1);
        if let Role::Leader { progress, .. } = &mut self.role {
            for &member in latest.members.keys().filter(|&&m| m != id) {
                // A member that was not in the previous configuration starts
                // afresh, even if a progress of it is still held (it was
                // removed and is being told so): it is a new data dir, whose
                // log matches ours nowhere yet. Keeping the old match index
                // would count entries it does not have.
                let new = previous.is_some_and(|p| !p.contains(member));
                if new {
                    progress.insert(member, Progress::new(next_index));
                } else {
                    progress
                        .entry(member)
                        .or_insert_with(|| Progress::new(next_index));
                }
            }
            // A removed member keeps its progress until it has been sent the
            // commit of its removal (`release_departed`), unless the
            // configuration no longer remembers the removal.
            progress.retain(|peer, _| latest.contains(*peer) || latest.removed.contains_key(peer));
        }
    }

    /// After the leader built a message for `peer`: a removed member that
    /// has now been sent everything up to its committed removal is let go.
    pub(super) fn release_departed(&mut self, peer: NodeId, sent_through: Index) {
        let latest = self.configs.latest();
        if latest.contains(peer) {
            return;
        }
        let removal = latest.removed.get(&peer).map_or(0, |r| r.index);
        if self.commit_index >= removal && sent_through >= removal {
            if let Role::Leader { progress, .. } = &mut self.role {
                if progress.remove(&peer).is_some() {
                    debug!(
                        "node {}: sent removed node {peer} the commit of its removal at {removal}",
                        self.config.id
                    );
                }
            }
        }
    }

    /// The index of the committed entry that removed this node, if one did.
    /// A node added back under a removed id (a new data dir) meets its
    /// predecessor's removal as it catches up: that one is not its own when
    /// it recorded another incarnation, or when a later entry of the log
    /// already adds this node back.
    pub(super) fn removed_at(&self) -> Option<Index> {
        let (_, committed) = self.configs.at(self.commit_index);
        let index = committed.removal_of(self.config.id, self.config.incarnation)?;
        match self.configs.latest().contains(self.config.id) {
            true => None,
            false => Some(index),
        }
    }

    /// §4.2.2: a leader whose removal is committed steps down. It first
    /// hands its leadership to the most up-to-date voter (§3.10): it takes
    /// no more proposals, brings that voter's log up to date and sends it a
    /// TimeoutNow, so the cluster does not wait out an election timeout;
    /// then, or if that has not happened within an election timeout, it
    /// steps down.
    pub(super) fn step_down_if_removed(&mut self) {
        if self.role() != RoleKind::Leader || !self.removed_as_voter() {
            return;
        }
        let Some(successor) = self
            .transferring_to()
            .or_else(|| self.most_up_to_date_voter())
        else {
            info!(
                "node {}: no longer a voter as of the committed configuration; stepping down",
                self.config.id
            );
            self.become_follower(self.current_term, None);
            return;
        };
        if let Role::Leader {
            transfer, progress, ..
        } = &mut self.role
        {
            if transfer.is_none() {
                info!(
                    "node {}: no longer a voter as of the committed configuration (§4.2.2); \
                     handing leadership to {successor} before stepping down",
                    self.config.id
                );
                *transfer = Some(Transfer {
                    target: successor,
                    elapsed: 0,
                    timeout_now_sent: false,
                });
                if let Some(pr) = progress.get_mut(&successor) {
                    pr.heartbeat_due();
                }
            }
        }
        self.maybe_send_timeout_now(successor);
    }

    /// Whether the committed configuration no longer counts this node as a
    /// voter (it was removed, or demoted).
    fn removed_as_voter(&self) -> bool {
        !self
            .configs
            .at(self.commit_index)
            .1
            .is_voter(self.config.id)
    }

    /// The other voter whose log matches the leader's furthest (the lowest
    /// id among equals).
    fn most_up_to_date_voter(&self) -> Option<NodeId> {
        let Role::Leader { progress, .. } = &self.role else {
            return None;
        };
        let latest = self.configs.latest();
        progress
            .iter()
            .filter(|(&id, _)| latest.is_voter(id))
            .max_by_key(|(&id, pr)| (pr.match_index(), std::cmp::Reverse(id)))
            .map(|(&id, _)| id)
    }

    /// The node learned, from a handshake, the incarnation of `id`'s data
    /// dir; a leader records it in the configuration if it is not yet.
    /// (Removed ones' too: a node added back under a removed id, with a new
    /// data dir, is told from the one removed by it.)
    pub fn learn_incarnation(&mut self, id: NodeId, incarnation: u64) {
        let latest = self.configs.latest();
        if incarnation != 0 && (latest.contains(id) || latest.removed.contains_key(&id)) {
            self.incarnations.insert(id, incarnation);
        }
    }

    /// The changes a leader makes by itself, one at a time: recording
    /// members' incarnations, then promoting learners that caught up.
    pub(super) fn propose_automatic_change(&mut self) {
        if self.change_allowed().is_err() {
            return;
        }
        let latest = self.configs.latest();
        let unrecorded = latest.members.iter().find_map(|(&id, m)| {
            let known = match id == self.config.id {
                true => Some(self.config.incarnation).filter(|&i| i != 0),
                false => self.incarnations.get(&id).copied(),
            };
            known
                .filter(|&i| m.incarnation != Some(i) && m.incarnation.is_none())
                .map(|incarnation| ConfChange::RecordIncarnation { id, incarnation })
        });
        let last_index = self.log.last_index();
        let caught_up = latest
            .members
            .iter()
            .filter(|(_, m)| !m.is_voter() && m.auto_promote)
            .find(|(&id, _)| {
                self.progress(id).is_some_and(|pr| {
                    pr.state() == ProgressState::Replicate
                        && pr.match_index() + PROMOTE_MAX_LAG >= last_index
                })
            })
            .map(|(&id, _)| ConfChange::Promote { id });
        if let Some(change) = unrecorded.or(caught_up) {
            if let Err(e) = self.propose_change(change) {
                warn!(
                    "node {}: automatic configuration change refused: {e}",
                    self.config.id
                );
            }
        }
    }

    /// Starts handing leadership to `target`, or to the most up-to-date
    /// voter (§3.10). Returns the target; it leads once
    /// [`RaftCore::leader_id`] says so on this node (which then follows it).
    /// Proposals are refused until then, or until an election timeout has
    /// passed and the transfer is abandoned.
    pub fn transfer_leadership(&mut self, target: Option<NodeId>) -> Result<NodeId, TransferError> {
        let Role::Leader { transfer, .. } = &self.role else {
            return Err(TransferError::NotLeader(NotLeader {
                leader: self.leader_id(),
            }));
        };
        if let Some(t) = transfer {
            return Err(TransferError::InProgress(t.target));
        }
        let target = match target {
            Some(id) if id == self.config.id => return Ok(id),
            Some(id) if !self.configs.latest().contains(id) => {
                return Err(TransferError::UnknownNode(id))
            }
            Some(id) if !self.configs.latest().is_voter(id) => {
                return Err(TransferError::NotAVoter(id))
            }
            Some(id) => id,
            None => self
                .most_up_to_date_voter()
                .ok_or(TransferError::NoTarget)?,
        };
        info!(
            "node {}: transferring leadership to {target} (§3.10); not taking proposals meanwhile",
            self.config.id
        );
        if let Role::Leader {
            transfer, progress, ..
        } = &mut self.role
        {
            *transfer = Some(Transfer {
                target,
                elapsed: 0,
                timeout_now_sent: false,
            });
            if let Some(pr) = progress.get_mut(&target) {
                pr.heartbeat_due();
            }
        }
        self.maybe_send_timeout_now(target);
        Ok(target)
    }

    /// The target of the leadership transfer under way, if any.
    pub fn transferring_to(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader {
                transfer: Some(t), ..
            } => Some(t.target),
            _ => None,
        }
    }

    /// Sends the transfer's target its TimeoutNow once its log matches the
    /// leader's whole log (which cannot grow meanwhile).
    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        let last_index = self.log.last_index();
        let Role::Leader {
            transfer: Some(t),
            progress,
            ..
        } = &mut self.role
        else {
            return;
        };
        let caught_up = progress
            .get(&peer)
            .is_some_and(|pr| pr.match_index() == last_index);
        if t.target != peer || t.timeout_now_sent || !caught_up {
            return;
        }
        t.timeout_now_sent = true;
        self.timeout_now_term = self.current_term;
        info!(
            "node {}: {peer} is up to date; sending it TimeoutNow",
            self.config.id
        );
        self.send(peer, Message::TimeoutNow);
        if self.removed_as_voter() {
            // §4.2.2: the hand-over is under way; step down now.
            self.become_follower(self.current_term, None);
        }
    }

    /// Abandons a transfer that has not completed within an election
    /// timeout: the leader takes proposals again.
    pub(super) fn tick_transfer(&mut self) {
        let limit = self.config.election_ticks_max;
        let Role::Leader { transfer, .. } = &mut self.role else {
            return;
        };
        let Some(t) = transfer else {
            return;
        };
        t.elapsed += 1;
        if t.elapsed >= limit {
            warn!(
                "node {}: leadership transfer to {} did not complete within {limit} ticks; \
                 taking proposals again",
                self.config.id, t.target
            );
            *transfer = None;
            if self.removed_as_voter() {
                self.become_follower(self.current_term, None);
            }
        }
    }

    /// §3.10: the leader asks this node to campaign now. Only a voter can;
    /// the request must come from the leader of our term.
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.leader_id() != Some(from) || !self.is_voter() {
            debug!(
                "node {}: ignoring TimeoutNow from {from} (leader {:?}, voter {})",
                self.config.id,
                self.leader_id(),
                self.is_voter()
            );
            return;
        }
        info!(
            "node {}: TimeoutNow from leader {from}; campaigning at once",
            self.config.id
        );
        self.campaign(true);
    }
}
