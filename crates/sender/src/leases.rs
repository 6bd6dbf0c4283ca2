//! The deliveries a worker holds leases on, and whether those leases may be
//! running out.
//!
//! A delivery is held from its claim until its outcome is recorded, not
//! only until its message is sent: a message sent while the database is
//! away has its outcome written only once the database is back, and until
//! then its lease is all that keeps a claim from taking the delivery as a
//! dead worker's and sending it again. That claim may be this worker's
//! own: after an outage longer than a lease, the next claim would find its
//! own leases run out. So a worker that has not renewed for half a lease
//! renews what it holds before it claims again ([`Held::may_run_out`]).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The deliveries a worker holds: claimed, and their outcomes not yet
/// recorded. [`Worker`](crate::Worker) renews their leases every third of
/// a lease.
#[derive(Debug)]
pub(crate) struct Held(Mutex<State>);

#[derive(Debug)]
struct State {
    ids: HashSet<i64>,
    /// When the last renewal that succeeded was started (the leases it
    /// gave run from a moment no earlier than this).
    renewed: Instant,
}

impl Held {
    /// Nothing held yet.
    pub(crate) fn new() -> Self {
        Self(Mutex::new(State {
            ids: HashSet::new(),
            renewed: Instant::now(),
        }))
    }

    /// Holds the deliveries of a claim just made (their leases are fresh).
    pub(crate) fn hold(&self, ids: impl IntoIterator<Item = i64>) {
        self.lock().ids.extend(ids);
    }

    /// Lets go of deliveries whose outcomes are recorded (their leases are
    /// cleared with them) or given up on.
    pub(crate) fn let_go(&self, ids: impl IntoIterator<Item = i64>) {
        let mut state = self.lock();
        for id in ids {
            state.ids.remove(&id);
        }
    }

    /// The deliveries held now.
    pub(crate) fn ids(&self) -> Vec<i64> {
        self.lock().ids.iter().copied().collect()
    }

    /// Records a renewal of every lease held, started at `at`, that
    /// succeeded.
    pub(crate) fn renewed(&self, at: Instant) {
        let mut state = self.lock();
        state.renewed = state.renewed.max(at);
    }

    /// Whether some lease held may have less than half of `lease` left, so
    /// a claim made now could take it back: deliveries are held and no
    /// renewal has succeeded for half a lease (the database was away; in
    /// normal running one succeeds every third).
    pub(crate) fn may_run_out(&self, lease: Duration, now: Instant) -> bool {
        let state = self.lock();
        !state.ids.is_empty() && overdue(state.renewed, lease, now)
    }

    /// The state, poisoned or not: it stays consistent whatever a
    /// panicking holder was doing (every change is one insert, remove or
    /// assignment).
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a lease renewed at `renewed` for `lease` may have less than half
/// of it left at `now`.
fn overdue(renewed: Instant, lease: Duration, now: Instant) -> bool {
    now.saturating_duration_since(renewed) >= lease / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_overdue_from_half_a_lease_after_their_renewal() {
        let lease = Duration::from_secs(120);
        let t = Instant::now();
        let s = Duration::from_secs;
        for (since, overdue_then) in [
            (s(0), false),
            (s(40), false), // the keeper's interval: renewed in time
            (s(59), false),
            (s(60), true),
            (s(119), true),
            (s(600), true), // a long outage
        ] {
            assert_eq!(
                overdue(t, lease, t + since),
                overdue_then,
                "{since:?} after the renewal"
            );
        }
        // A clock read before the renewal it is compared with.
        assert!(!overdue(t + s(5), lease, t));
    }

    #[test]
    fn only_held_deliveries_need_renewing() {
        let held = Held::new();
        let start = Instant::now();
        let later = start + Duration::from_secs(100);
        let lease = Duration::from_secs(120);
        assert!(!held.may_run_out(lease, later), "nothing held");
        held.hold([1, 2, 3]);
        assert!(held.may_run_out(lease, later));
        held.renewed(later);
        assert!(!held.may_run_out(lease, later), "just renewed");
        held.renewed(start);
        assert!(
            !held.may_run_out(lease, later),
            "an older renewal counts for nothing"
        );
        held.let_go([1, 2, 3, 4]);
        assert!(held.ids().is_empty());
        assert!(!held.may_run_out(lease, later + lease), "all let go");
    }
}
