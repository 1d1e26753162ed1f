//! Cursor moves handed from the sinks to the ingest thread, saved with its next commit.
//!
//! A sink that delivered a chunk moves its cursor. Saved by the sink, that is a hand-off to tokio's blocking pool
//! (a thread woken) and a write transaction of its own, once per delivery and sink: the largest cost left of the
//! delivery path at the gateway workload, and a second writer the ingest thread's commits could wait for. While
//! readings flow, the ingest thread commits every flush interval anyway, so it writes the moves handed to it
//! into that transaction. A move is accepted only while such a commit is timed ([`Handoff::hand`] says no
//! otherwise, and the sink saves it itself, as before): taking the moves and saying whether the next commit is
//! timed happen under one lock, so a move can never be left waiting for a commit that will not come.
//!
//! What this changes for delivery: nothing is lost (a cursor only lags, and a lagging cursor re-delivers); a
//! crash re-delivers at most one flush interval more, and the moves are now fsync'd with the commit
//! (`synchronous=FULL`), where the sinks' own saves were not. A sink saves its last cursor itself when it ends.

use super::Stream;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A cursor move: the sink, its stream, the position delivered up to.
pub type Move = (&'static str, Stream, i64);

#[derive(Default)]
struct Board {
    moves: Vec<Move>,
    /// The ingest thread's next commit is timed before this.
    until: Option<Instant>,
}

/// Shared between the sink runners (hand) and the ingest thread (take, commit).
#[derive(Clone, Default)]
pub struct Handoff(Arc<Mutex<Board>>);

impl Handoff {
    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        crate::util::lock(&self.0)
    }

    /// Hand a cursor move to the ingest thread's next commit; `false` when none is timed (the caller saves it).
    pub fn hand(&self, sink: &'static str, stream: Stream, pos: i64) -> bool {
        let mut b = self.board();
        if b.until.is_none_or(|t| Instant::now() >= t) {
            return false;
        }
        merge(&mut b.moves, (sink, stream, pos));
        true
    }

    /// The moves handed so far, to commit; and until when the next commit is timed (`None`: not timed, moves
    /// are refused from now on).
    pub fn take(&self, next: Option<Instant>) -> Vec<Move> {
        let mut b = self.board();
        b.until = next;
        std::mem::take(&mut b.moves)
    }

    /// The moves handed so far, to commit, leaving the timing as it is (an alert commit between two flushes).
    pub fn take_now(&self) -> Vec<Move> {
        std::mem::take(&mut self.board().moves)
    }

    /// Moves whose commit failed: kept for the next one (the newer of two positions of the same cursor wins).
    pub fn put_back(&self, moves: Vec<Move>) {
        let mut b = self.board();
        for m in moves {
            merge(&mut b.moves, m);
        }
    }
}

/// Add `m` to `moves`, one per sink and stream: of two positions of the same cursor the further one.
fn merge(moves: &mut Vec<Move>, m: Move) {
    match moves.iter_mut().find(|o| o.0 == m.0 && o.1 == m.1) {
        Some(o) => o.2 = o.2.max(m.2),
        None => moves.push(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn moves_are_taken_only_while_a_commit_is_timed() {
        let h = Handoff::default();
        // Nothing timed yet (start-up, or readings stopped): the sink saves it itself.
        assert!(!h.hand("influxdb", Stream::Readings, 5));
        assert!(h
            .take(Some(Instant::now() + Duration::from_secs(5)))
            .is_empty());
        assert!(h.hand("influxdb", Stream::Readings, 7));
        assert!(h.hand("mqtt", Stream::Events, 3));
        // An older position of the same cursor does not move it back.
        assert!(h.hand("influxdb", Stream::Readings, 6));
        let taken = h.take(None);
        assert_eq!(
            taken,
            vec![
                ("influxdb", Stream::Readings, 7),
                ("mqtt", Stream::Events, 3)
            ]
        );
        // The commit that took them timed no next one: refused again.
        assert!(!h.hand("influxdb", Stream::Readings, 8));
        // A failed commit puts them back; a newer move handed meanwhile wins.
        h.take(Some(Instant::now() + Duration::from_secs(5)));
        assert!(h.hand("mqtt", Stream::Events, 4));
        h.put_back(taken);
        let mut again = h.take_now();
        again.sort_by_key(|m| m.0);
        assert_eq!(
            again,
            vec![
                ("influxdb", Stream::Readings, 7),
                ("mqtt", Stream::Events, 4)
            ]
        );
        // A timing that has passed refuses too.
        h.take(Some(Instant::now()));
        assert!(!h.hand("mqtt", Stream::Events, 5));
    }
}
