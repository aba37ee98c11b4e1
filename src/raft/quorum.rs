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

/// The highest value that a majority of the voters have reached, given
/// every voter's value (the node's own included, if it votes); 0 without
/// voters.
pub fn reached_by_majority(mut values: Vec<u64>) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[majority(values.len()) - 1]
}

/// Where an election (or a pre-vote) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    /// A majority refused: this election cannot be won.
    Lost,
    Pending,
}

/// Tallies the answers so far (the candidate's own vote included). Only the
/// answers of `voters` count: a learner's or a former member's say nothing.
pub fn tally(votes: &BTreeMap<NodeId, bool>, voters: &[NodeId]) -> VoteResult {
    let needed = majority(voters.len());
    let answer = |v: bool| voters.iter().filter(|id| votes.get(id) == Some(&v)).count();
    if answer(true) >= needed {
        VoteResult::Won
    } else if answer(false) >= needed {
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
        // Five voters: the third highest of all values.
        assert_eq!(reached_by_majority(vec![9, 1, 7, 3, 5]), 5);
        assert_eq!(reached_by_majority(vec![9, 9, 1, 1, 1]), 1);
        assert_eq!(reached_by_majority(vec![4]), 4);
        assert_eq!(reached_by_majority(Vec::new()), 0);
    }

    #[test]
    fn tallies_count_only_voters() {
        let votes = |v: &[(NodeId, bool)]| v.iter().copied().collect::<BTreeMap<_, _>>();
        let three = [1, 2, 3];
        assert_eq!(tally(&votes(&[(1, true)]), &three), VoteResult::Pending);
        assert_eq!(
            tally(&votes(&[(1, true), (2, true)]), &three),
            VoteResult::Won
        );
        assert_eq!(
            tally(&votes(&[(1, true), (2, false)]), &three),
            VoteResult::Pending
        );
        assert_eq!(
            tally(&votes(&[(1, true), (2, false), (3, false)]), &three),
            VoteResult::Lost
        );
        // A learner's (or a stranger's) grant does not make a majority.
        assert_eq!(
            tally(&votes(&[(1, true), (4, true), (5, true)]), &three),
            VoteResult::Pending
        );
    }
}
