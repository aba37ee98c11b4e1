//! Membership changes at random moments: a thread that adds, promotes and
//! removes nodes and transfers leadership, through whichever node leads,
//! while the scenario partitions, crashes, pauses and power-cuts the
//! cluster.
//!
//! # How it decides
//!
//! Every step starts from a *settled* view of the configuration
//! ([`Settled`]): a leader backed by a majority of its voters, that has
//! committed an entry of its own term and has no configuration change in
//! flight. Its configuration is then final: every later leader holds that
//! committed entry of its term, and no configuration entry of an earlier
//! term can follow it in any log, so a change that timed out earlier
//! (outcome unknown) has either been committed by now or is gone for good.
//! Without a settled view the thread does nothing this step.
//!
//! With one, it first makes the harness match it (reconciles): a member
//! the harness does not run is started with an empty data dir and `join`
//! (an addition whose outcome was unknown, and that happened), and a node
//! the harness runs that is not a member is halted and let go (a removal
//! that happened, or an addition that did not). Then it picks a step:
//!
//! * **add** a free id as a learner (with auto-promotion, usually), then
//!   start it with an empty data dir and `join = true` (an id removed
//!   before only if the plan says so: see [`Plan::add_back_removed`]);
//! * **promote** a learner added without auto-promotion;
//! * **remove** a member — a voter (the leader among them, now and then,
//!   §4.2.2) only while more than `min_voters` remain, and below
//!   `steady_voters` rarely — then give it `removal_grace` to learn of its
//!   removal and halt it;
//! * but a voter is promoted or removed only if a majority of the voters it
//!   leaves hold the configuration in force (their match index on the
//!   leader reaches its entry), unless the plan says otherwise
//!   ([`Plan::caught_up_majority`]): a voter that lags behind the entry
//!   that added another ignores that one's vote requests, and a majority of
//!   such voters leaves the cluster without a leader for good (see the
//!   ignored scenarios in `faults.rs`);
//! * **transfer** leadership (§3.10) to a random other voter, or to
//!   whichever the leader picks.
//!
//! A change refused (not the leader, another change in flight) is simply
//! tried again later; one whose outcome is unknown (timeout, the node shut
//! down or lost its disk) is found out from the next settled view.
//!
//! # What it checks
//!
//! * A configuration seen committed is never undone: between two settled
//!   views the set of members changes only by the changes the thread saw
//!   commit (or whose outcome it did not know), and voters stay voters.
//! * A removed node that learns of its removal reports the index of the
//!   very entry that removed it, and no member reports it was removed. (A
//!   node that reports its removal would exit if it were a process; a
//!   non-member is halted then, a member is left running so that the
//!   scenario ends and reports the violation.)
//! * A transfer that reports success handed leadership to the node asked
//!   for, which then is in a later term.
//! * At the end ([`Report::check_end`]): the final configuration is the one
//!   the thread last knew, and no node it removed (and did not add back) is
//!   in it.

use super::{Inner, RECOVER};
use raftnode::raft::membership::{ChangeError, ConfChange, Suffrage};
use raftnode::raft::message::{Index, NodeId, Term};
use raftnode::raft::RoleKind;
use raftnode::Error;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What the membership thread does, and how often.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The pause before each step, in milliseconds (drawn uniformly).
    pub interval_ms: (u64, u64),
    /// The steps' relative weights (a step that cannot be taken is left
    /// out of the draw).
    pub add: u32,
    pub promote: u32,
    pub remove: u32,
    pub transfer: u32,
    /// The probability that a node is added with auto-promotion; the others
    /// are promoted by a later step.
    pub auto_promote: f64,
    /// The probability that a removal removes the leader itself.
    pub remove_leader: f64,
    /// Additions never make more members than this.
    pub max_members: usize,
    /// Removals never leave fewer voters than this ...
    pub min_voters: usize,
    /// ... and leave fewer than this only with probability `below_steady`.
    pub steady_voters: usize,
    pub below_steady: f64,
    /// How long a removed node that runs is given to learn of its removal
    /// before it is halted.
    pub removal_grace: Duration,
    /// Whether an id that was removed may be added back (with an empty data
    /// dir, as an operator brings a wiped machine back). Off by default: a
    /// node added back takes itself for removed when it catches up through
    /// its earlier removal (see the ignored scenarios in `faults.rs`).
    pub add_back_removed: bool,
    /// Whether a voter is promoted or removed only when a majority of the
    /// voters it leaves hold the configuration in force (see the module
    /// docs). On by default; without it the cluster can lose its leader
    /// for good (see the ignored scenarios in `faults.rs`).
    pub caught_up_majority: bool,
}

impl Default for Plan {
    /// Mostly adds and removes, now and then a transfer: the cluster keeps
    /// 3 voters most of the time, sometimes 2, 4 or 5, and at most 5
    /// members.
    fn default() -> Plan {
        Plan {
            interval_ms: (40, 250),
            add: 4,
            promote: 2,
            remove: 4,
            transfer: 1,
            auto_promote: 0.75,
            remove_leader: 0.3,
            max_members: 5,
            min_voters: 2,
            steady_voters: 3,
            below_steady: 0.15,
            removal_grace: Duration::from_millis(500),
            add_back_removed: false,
            caught_up_majority: true,
        }
    }
}

impl Plan {
    /// Mostly leadership transfers, with a change of membership now and
    /// then, so that transfers also meet learners, new voters and leaders
    /// being removed.
    pub fn transfers() -> Plan {
        Plan {
            interval_ms: (20, 150),
            add: 1,
            promote: 1,
            remove: 1,
            transfer: 8,
            ..Plan::default()
        }
    }
}

/// A configuration known to be committed for good (see the module docs),
/// as its leader holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub leader: NodeId,
    pub term: Term,
    /// The entry that set it.
    pub config_index: Index,
    pub voters: BTreeSet<NodeId>,
    /// Each learner, and whether the leader will promote it by itself.
    pub learners: BTreeMap<NodeId, bool>,
    /// The members whose log holds this configuration's entry, as far as
    /// the leader knows (the leader among them).
    pub holding: BTreeSet<NodeId>,
}

impl Settled {
    pub fn members(&self) -> BTreeSet<NodeId> {
        (self.voters.iter())
            .chain(self.learners.keys())
            .copied()
            .collect()
    }

    pub fn describe(&self) -> String {
        match self.learners.is_empty() {
            true => format!("voters {:?}", self.voters),
            false => format!(
                "voters {:?}, learners {:?}",
                self.voters,
                self.learners.keys().collect::<Vec<_>>()
            ),
        }
    }
}

impl Inner {
    /// The settled view of the configuration, if there is one now.
    pub(super) fn settled(&self) -> Option<Settled> {
        let leader = self.leader()?;
        if self.paused.lock().contains(&leader) {
            return None;
        }
        let node = self.node(leader)?;
        let status = node.try_status()?;
        if status.role != RoleKind::Leader || status.config_change_in_progress {
            return None;
        }
        let membership = node.membership();
        if membership.config_index != status.config_index || membership.change_in_progress {
            return None;
        }
        // An entry of its own term is committed: the committed entry's term
        // (a leader's log holds nothing of earlier terms after its first
        // entry of its own).
        let log = node.log_entries();
        let first = log.first()?.index;
        let offset = usize::try_from(status.commit_index.checked_sub(first)?).ok()?;
        let at_commit = log.get(offset)?;
        if at_commit.index != status.commit_index || at_commit.term != status.term {
            return None;
        }
        let voters: BTreeSet<NodeId> = (membership.members.iter())
            .filter(|m| m.suffrage == Suffrage::Voter)
            .map(|m| m.id)
            .collect();
        let learners: BTreeMap<NodeId, bool> = (membership.members.iter())
            .filter(|m| m.suffrage == Suffrage::Learner)
            .map(|m| (m.id, m.auto_promote))
            .collect();
        let holding = (membership.members.iter())
            .filter(|m| m.match_index.is_some_and(|i| i >= status.config_index))
            .map(|m| m.id)
            .collect();
        // The two reads were not atomic: they must describe the same
        // configuration.
        if voters != status.members.iter().copied().collect()
            || learners.keys().copied().collect::<Vec<_>>() != status.learners
        {
            return None;
        }
        Some(Settled {
            leader,
            term: status.term,
            config_index: status.config_index,
            voters,
            learners,
            holding,
        })
    }

    /// Nodes that report they were removed would exit, were they
    /// processes: non-members are let go; a member that reports it is a
    /// violation (it is left running, so that the scenario can end), and so
    /// is a member whose data dir refused to restart for that reason.
    pub(super) fn check_removal_reports(&self, view: &Settled) {
        let members = view.members();
        let refused: Vec<(NodeId, Index)> = (self.refused_restarts.lock().iter())
            .filter(|(id, _)| members.contains(id))
            .map(|(&id, &at)| (id, at))
            .collect();
        for (id, at) in refused {
            self.violation_once(
                format!("node {id} refused to restart, removed at {at},"),
                view,
            );
        }
        for id in self.running() {
            let Some(at) = self.node(id).and_then(|n| n.removed()) else {
                continue;
            };
            if !members.contains(&id) {
                self.let_go(id);
                continue;
            }
            self.violation_once(format!("node {id} reports it was removed at {at},"), view);
        }
    }

    /// Records `claim`, a node's claim to be removed, as a violation unless
    /// it was recorded before: it is a member of `view`.
    fn violation_once(&self, claim: String, view: &Settled) {
        let mut violations = self.violations.lock();
        if !violations.iter().any(|v| v.starts_with(&claim)) {
            violations.push(format!(
                "{claim} but it is a member of the configuration of entry {} ({}) held by \
                 leader {} in term {}",
                view.config_index,
                view.describe(),
                view.leader,
                view.term
            ));
        }
    }

    /// Changes the membership through the leader, retrying while the leader
    /// is unknown or busy (for scenarios that make their own changes, with
    /// no membership thread running). Returns the change's entry.
    pub(super) fn change(&self, change: ConfChange) -> Index {
        let deadline = Instant::now() + RECOVER;
        loop {
            let result = match self.leader().and_then(|l| self.node(l)) {
                Some(leader) => leader.change_membership(change.clone()),
                None => Err(Error::NotLeader { leader: None }),
            };
            match result {
                Ok(index) => return index,
                Err(Error::Change(ChangeError::InProgress(_))) | Err(Error::NotLeader { .. }) => {}
                Err(e) => panic!("{change}: {e}"),
            }
            assert!(Instant::now() < deadline, "{change}: no leader took it");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Makes the nodes the harness runs match `view`: members it does not
    /// run are started with an empty data dir, nodes that are no members are
    /// halted and let go.
    pub(super) fn reconcile(&self, view: &Settled) -> (Vec<NodeId>, Vec<NodeId>) {
        let members = view.members();
        let known: Vec<NodeId> = self.nodes.lock().keys().copied().collect();
        let gone: Vec<NodeId> = (known.iter().copied())
            .filter(|id| !members.contains(id))
            .collect();
        for &id in &gone {
            self.let_go(id);
        }
        let started: Vec<NodeId> = (members.iter().copied())
            .filter(|id| !known.contains(id))
            .collect();
        for &id in &started {
            self.start_joining(id);
        }
        (started, gone)
    }
}

/// What the membership thread did, for the scenario to print and check.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub steps: u32,
    /// Steps skipped for want of a settled view.
    pub unsettled: u32,
    pub added: u32,
    pub promoted: u32,
    pub removed: u32,
    pub removed_leader: u32,
    /// Removed nodes that reported their removal within the grace period,
    /// and that did not (they were cut off, down, or slow).
    pub removal_learnt: u32,
    pub removal_unnoticed: u32,
    pub not_leader: u32,
    pub in_progress: u32,
    /// Changes refused for another reason (printed as they happen).
    pub refused: u32,
    /// Changes whose outcome was unknown, and what became of them.
    pub unknown: u32,
    pub unknown_happened: u32,
    pub unknown_lost: u32,
    /// Members started or let go because a settled view said so (mostly
    /// after unknown outcomes).
    pub reconciled: u32,
    pub transfers: u32,
    pub transfers_timed_out: u32,
    pub transfers_refused: u32,
    /// The fewest and most voters seen in a settled view.
    pub voters_seen: (usize, usize),
    /// The members the thread last knew, if it knew (no change's outcome
    /// unknown since).
    pub expected: Option<BTreeSet<NodeId>>,
    /// Ids it removed and did not add back.
    pub removed_ids: BTreeSet<NodeId>,
    /// Ids it ever removed.
    pub ever_removed: BTreeSet<NodeId>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} steps ({} unsettled): added {}, promoted {}, removed {} ({} leaders; {} learnt \
             it, {} halted unaware); transfers {} ({} timed out, {} refused); refused: {} not \
             leader, {} in progress, {} other; unknown outcomes {} ({} happened, {} not); \
             reconciled {}; voters {}..={}",
            self.steps,
            self.unsettled,
            self.added,
            self.promoted,
            self.removed,
            self.removed_leader,
            self.removal_learnt,
            self.removal_unnoticed,
            self.transfers,
            self.transfers_timed_out,
            self.transfers_refused,
            self.not_leader,
            self.in_progress,
            self.refused,
            self.unknown,
            self.unknown_happened,
            self.unknown_lost,
            self.reconciled,
            self.voters_seen.0,
            self.voters_seen.1
        )
    }
}

impl Report {
    /// The final configuration is the one the thread last knew, and holds
    /// none of the nodes it removed.
    pub fn check_end(&self, last: &Settled) -> Result<(), String> {
        let members = last.members();
        if let Some(expected) = &self.expected {
            if &members != expected {
                return Err(format!(
                    "the final configuration has members {members:?}, but the membership \
                     thread last saw {expected:?} committed"
                ));
            }
        }
        let back: Vec<_> = self.removed_ids.intersection(&members).collect();
        if !back.is_empty() {
            return Err(format!(
                "removed nodes {back:?} are members of the final configuration {}",
                last.describe()
            ));
        }
        Ok(())
    }
}

/// What the thread knows of the configuration between settled views.
#[derive(Debug, Clone)]
struct Expected {
    members: BTreeSet<NodeId>,
    voters: BTreeSet<NodeId>,
}

#[derive(Debug, Clone)]
enum Step {
    Change(ConfChange),
    Transfer(Option<NodeId>),
}

/// The membership thread: steps until told to stop (see the module docs).
pub(super) fn run(inner: Arc<Inner>, plan: Plan, seed: u64) -> Report {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = Report {
        voters_seen: (usize::MAX, 0),
        ..Report::default()
    };
    let mut expected: Option<Expected> = None;
    let mut pending: Option<ConfChange> = None;
    while !inner.stop_membership.load(Ordering::Acquire) {
        let (lo, hi) = plan.interval_ms;
        thread::sleep(Duration::from_millis(rng.gen_range(lo..=hi)));
        report.steps += 1;
        let Some(view) = inner.settled() else {
            report.unsettled += 1;
            continue;
        };
        observe(&inner, &view, &mut expected, &mut pending, &mut report);
        inner.check_removal_reports(&view);
        let (started, gone) = inner.reconcile(&view);
        report.reconciled += (started.len() + gone.len()) as u32;
        let Some(step) = choose(&inner, &view, &plan, &report, &mut rng) else {
            continue;
        };
        let Some(leader) = inner.node(view.leader) else {
            continue;
        };
        match step {
            Step::Transfer(target) => {
                transfer(&inner, &leader, &view, target, &mut report);
            }
            Step::Change(change) => {
                let result = leader.change_membership(change.clone());
                match result {
                    Ok(index) => {
                        drop(leader);
                        committed(&inner, &plan, &view, &change, index, &mut report);
                        if let Some(e) = expected.as_mut() {
                            e.apply(&change);
                        }
                    }
                    Err(Error::NotLeader { .. }) => report.not_leader += 1,
                    Err(Error::Change(ChangeError::InProgress(_))) => report.in_progress += 1,
                    Err(Error::Change(e)) => {
                        report.refused += 1;
                        eprintln!("membership: {change} refused: {e}");
                    }
                    Err(e) => {
                        // Timeout, shut down, storage failed: it may have
                        // happened, or may still.
                        log::info!("membership: {change}: outcome unknown: {e}");
                        report.unknown += 1;
                        pending = Some(change);
                        expected = None;
                    }
                }
            }
        }
    }
    if report.voters_seen.0 == usize::MAX {
        report.voters_seen.0 = 0;
    }
    if let Some(ConfChange::AddLearner { id, .. }) = pending {
        // Added back, or not: unknown.
        report.removed_ids.remove(&id);
    }
    report.expected = expected.map(|e| e.members);
    report
}

/// Checks a settled view against what the thread knew, resolves an unknown
/// outcome, and takes the view as what it knows now.
fn observe(
    inner: &Inner,
    view: &Settled,
    expected: &mut Option<Expected>,
    pending: &mut Option<ConfChange>,
    report: &mut Report,
) {
    let members = view.members();
    if let Some(e) = expected.as_ref() {
        if e.members != members || !e.voters.is_subset(&view.voters) {
            inner.violation(format!(
                "a committed configuration was undone: the membership thread knew members \
                 {:?} (voters {:?}) committed, and now leader {} in term {} holds {} as of \
                 entry {}",
                e.members,
                e.voters,
                view.leader,
                view.term,
                view.describe(),
                view.config_index
            ));
        }
    }
    if let Some(change) = pending.take() {
        let happened = match &change {
            ConfChange::AddLearner { id, .. } => members.contains(id),
            ConfChange::Remove { id } => !members.contains(id),
            ConfChange::Promote { id } => view.voters.contains(id),
            ConfChange::RecordIncarnation { .. } => true,
        };
        if happened {
            report.unknown_happened += 1;
            if let ConfChange::Remove { id } = change {
                report.removed_ids.insert(id);
                report.ever_removed.insert(id);
            }
        } else {
            report.unknown_lost += 1;
        }
        log::info!(
            "membership: {change}: {} (settled: {})",
            if happened {
                "happened"
            } else {
                "did not happen"
            },
            view.describe()
        );
    }
    // Removals and additions back, as the views show them (this also
    // covers the unknown outcomes).
    if let Some(e) = expected.as_ref() {
        for id in e.members.difference(&members) {
            report.removed_ids.insert(*id);
            report.ever_removed.insert(*id);
        }
    }
    for id in &members {
        report.removed_ids.remove(id);
    }
    let voters = view.voters.len();
    report.voters_seen = (
        report.voters_seen.0.min(voters),
        report.voters_seen.1.max(voters),
    );
    *expected = Some(Expected {
        members,
        voters: view.voters.clone(),
    });
}

impl Expected {
    fn apply(&mut self, change: &ConfChange) {
        match change {
            ConfChange::AddLearner { id, .. } => {
                self.members.insert(*id);
            }
            ConfChange::Promote { id } => {
                self.voters.insert(*id);
            }
            ConfChange::Remove { id } => {
                self.members.remove(id);
                self.voters.remove(id);
            }
            ConfChange::RecordIncarnation { .. } => {}
        }
    }
}

/// Picks the next step, or none if nothing is possible.
fn choose(
    inner: &Inner,
    view: &Settled,
    plan: &Plan,
    report: &Report,
    rng: &mut StdRng,
) -> Option<Step> {
    let members = view.members();
    let room = members.len() < plan.max_members;
    let free: Vec<NodeId> = (1..=inner.n)
        .filter(|id| room && !members.contains(id))
        .filter(|id| plan.add_back_removed || !report.ever_removed.contains(id))
        .collect();
    // Whether the voters `id` joins or leaves would have a majority that
    // holds the configuration in force.
    let cautious = |id: NodeId| {
        let mut voters = view.voters.clone();
        if !voters.remove(&id) {
            voters.insert(id);
        }
        let holding = voters.intersection(&view.holding).count();
        !plan.caught_up_majority || holding > voters.len() / 2
    };
    let promotable: Vec<NodeId> = (view.learners.iter())
        .filter(|(&id, &auto)| !auto && cautious(id))
        .map(|(&id, _)| id)
        .collect();
    let voters = view.voters.len();
    let voter_removable = voters > plan.min_voters
        && (voters > plan.steady_voters || rng.gen_bool(plan.below_steady));
    let removable: Vec<NodeId> = (members.iter().copied())
        .filter(|&id| view.learners.contains_key(&id) || voter_removable && cautious(id))
        .collect();
    let others: Vec<NodeId> = (view.voters.iter().copied())
        .filter(|&id| id != view.leader)
        .collect();
    let weights = [
        if free.is_empty() { 0 } else { plan.add },
        if promotable.is_empty() {
            0
        } else {
            plan.promote
        },
        if removable.is_empty() { 0 } else { plan.remove },
        if others.is_empty() { 0 } else { plan.transfer },
    ];
    let total: u32 = weights.iter().sum();
    if total == 0 {
        return None;
    }
    let mut draw = rng.gen_range(0..total);
    let kind = weights.iter().position(|&w| {
        if draw < w {
            true
        } else {
            draw -= w;
            false
        }
    })?;
    Some(match kind {
        0 => {
            let id = *free.choose(rng)?;
            Step::Change(ConfChange::AddLearner {
                id,
                raft_addr: inner.raft_addrs[&id].to_string(),
                client_addr: None,
                auto_promote: rng.gen_bool(plan.auto_promote),
            })
        }
        1 => Step::Change(ConfChange::Promote {
            id: *promotable.choose(rng)?,
        }),
        2 => {
            let leader_removable = voter_removable && removable.contains(&view.leader);
            let id = match leader_removable && rng.gen_bool(plan.remove_leader) {
                true => view.leader,
                false => *removable.choose(rng)?,
            };
            Step::Change(ConfChange::Remove { id })
        }
        _ => Step::Transfer(match rng.gen_bool(0.25) {
            true => None,
            false => Some(*others.choose(rng)?),
        }),
    })
}

/// A change committed (`index` is its entry): start an added node; give a
/// removed one its grace period, then let it go.
fn committed(
    inner: &Inner,
    plan: &Plan,
    view: &Settled,
    change: &ConfChange,
    index: Index,
    report: &mut Report,
) {
    log::info!("membership: {change}: committed at {index}");
    match change {
        ConfChange::AddLearner { id, .. } => {
            report.added += 1;
            report.removed_ids.remove(id);
            inner.start_joining(*id);
        }
        ConfChange::Promote { .. } => report.promoted += 1,
        ConfChange::Remove { id } => {
            report.removed += 1;
            if *id == view.leader {
                report.removed_leader += 1;
            }
            if let Some(node) = inner.node(*id) {
                match node.wait_removed(plan.removal_grace) {
                    Some(at) if at != index => inner.violation(format!(
                        "node {id} reports its removal at {at}, but it was removed at {index}"
                    )),
                    Some(_) => report.removal_learnt += 1,
                    None => report.removal_unnoticed += 1,
                }
            }
            inner.let_go(*id);
            report.removed_ids.insert(*id);
            report.ever_removed.insert(*id);
        }
        ConfChange::RecordIncarnation { .. } => {}
    }
}

/// Hands leadership over, and checks a reported success.
fn transfer(
    inner: &Inner,
    leader: &raftnode::kv::KvNode,
    view: &Settled,
    target: Option<NodeId>,
    report: &mut Report,
) {
    match leader.transfer_leadership(target) {
        Ok(to) => {
            report.transfers += 1;
            if target.is_some_and(|t| t != to) || to == view.leader {
                inner.violation(format!(
                    "leader {} was asked to transfer to {target:?}, and reports {to} leads",
                    view.leader
                ));
            }
            // The new leader campaigned: its term is past the old one (a
            // term it voted for itself in is durable, so not even a crash
            // since takes it back).
            if let Some(status) = inner.node(to).and_then(|n| n.try_status()) {
                if status.term <= view.term {
                    inner.violation(format!(
                        "leadership was transferred from {} in term {} to {to}, which is in \
                         term {}",
                        view.leader, view.term, status.term
                    ));
                }
            }
        }
        Err(Error::TransferTimedOut { .. }) => report.transfers_timed_out += 1,
        Err(Error::NotLeader { .. }) => report.not_leader += 1,
        Err(e) => {
            report.transfers_refused += 1;
            log::info!("membership: transfer to {target:?} refused: {e}");
        }
    }
}
