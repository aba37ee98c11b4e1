//! Majority arithmetic, in one place: how many votes win an election, and
//! what value a majority of the members has reached (an index replicated, a
//! read round answered).
//!
//! Raft's safety rests on any two majorities of the same members sharing at
//! least one member (§5.2, §5.4): a vote can be granted once per term, so two
//! candidates cannot both win one; an entry stored on a majority is held by
//! at least one voter of every future election, which is why only
//! up-to-date candidates can win (§5.4.1).

use super::message::NodeId;
use std::collections::BTreeMap;

/// The votes needed out of `voters` members: a strict majority.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest value that at least `majority` members have reached, given
/// the other members' values and the node's own.
pub fn reached_by_majority(others: impl Iterator<Item = u64>, own: u64, majority: usize) -> u64 {
    let mut values: Vec<u64> = others.collect();
    values.push(own);
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[majority - 1]
}

/// Where an election (or a pre-vote) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    /// A majority refused: this election cannot be won.
    Lost,
    Pending,
}

/// Tallies the answers so far (the candidate's own vote included).
pub fn tally(votes: &BTreeMap<NodeId, bool>, majority: usize) -> VoteResult {
    let granted = votes.values().filter(|&&v| v).count();
    if granted >= majority {
        VoteResult::Won
    } else if votes.len() - granted >= majority {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities() {
        assert_eq!(
            (1..=7).map(majority).collect::<Vec<_>>(),
            [1, 2, 2, 3, 3, 4, 4]
        );
    }

    #[test]
    fn the_value_a_majority_reached() {
        // Five members: the third highest of all values.
        assert_eq!(reached_by_majority([9, 1, 7, 3].into_iter(), 5, 3), 5);
        assert_eq!(reached_by_majority([9, 9, 1, 1].into_iter(), 1, 3), 1);
        assert_eq!(reached_by_majority(std::iter::empty(), 4, 1), 4);
    }

    #[test]
    fn tallies() {
        let votes = |v: &[(NodeId, bool)]| v.iter().copied().collect::<BTreeMap<_, _>>();
        assert_eq!(tally(&votes(&[(1, true)]), 2), VoteResult::Pending);
        assert_eq!(tally(&votes(&[(1, true), (2, true)]), 2), VoteResult::Won);
        assert_eq!(
            tally(&votes(&[(1, true), (2, false)]), 2),
            VoteResult::Pending
        );
        assert_eq!(
            tally(&votes(&[(1, true), (2, false), (3, false)]), 2),
            VoteResult::Lost
        );
    }
}
