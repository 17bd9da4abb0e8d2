//! Pure deadline bookkeeping: which items still await a verdict, which verdicts came too late.
//!
//! The node registers every acquired item with its deadline, feeds every decision through
//! [`DeadlineTracker::on_decision`] and calls [`DeadlineTracker::expire`] on every event (and on a
//! timer); for each expired key it writes the fail-safe verdict and raises an alarm. Time is
//! passed in (ns since the epoch); the tracker never reads a clock.
//!
//! Invariant (property-tested): every registered item leaves the tracker exactly once, either
//! as an [`DeadlineOutcome::Accepted`] decision, as a key returned by [`DeadlineTracker::expire`],
//! or as a key returned by [`DeadlineTracker::register`] when the tracker is full (the caller
//! treats an evicted item like an expired one: fail-safe).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use forgeline_schemas::{Correlation, Decision};

/// What to do with a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineOutcome {
    /// In time (`now_ns <= deadline_ns`): apply it.
    Accepted,
    /// After the deadline: do not apply it. The item is (or will be, at the next
    /// [`DeadlineTracker::expire`]) fail-safed, exactly once.
    Late {
        /// How far past the deadline the decision arrived, ns.
        late_by_ns: u64,
    },
    /// Never registered, evicted, forgotten, or a second decision for the same item: ignore it.
    Unknown,
}

/// Counters of a [`DeadlineTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadlineCounts {
    /// Items registered.
    pub registered: u64,
    /// Decisions accepted in time.
    pub accepted: u64,
    /// Decisions that arrived after their deadline.
    pub late: u64,
    /// Decisions for unknown items (or duplicates).
    pub unknown: u64,
    /// Items returned by [`DeadlineTracker::expire`].
    pub expired: u64,
    /// Items evicted because the tracker was full.
    pub evicted: u64,
    /// Registrations ignored because the item's decision had already come (as `Unknown`):
    /// the acquisition message arrived after its own decision, so it must not start a
    /// deadline (that would fail-safe an item that was decided).
    pub decided_before_registered: u64,
}

#[derive(Debug)]
struct Pending {
    deadline_ns: u64,
    order: u64,
    /// A late decision was already reported for it (a second one is `Unknown`).
    late_reported: bool,
}

/// Items awaiting a decision, with their deadlines. Memory is bounded by `capacity` pending
/// items plus `capacity` recently expired keys (to tell `Late` from `Unknown`).
#[derive(Debug)]
pub struct DeadlineTracker {
    capacity: usize,
    pending: HashMap<Correlation, Pending>,
    /// `(deadline_ns, registration order)` → key, to expire and evict in deadline order.
    by_deadline: BTreeMap<(u64, u64), Correlation>,
    /// Keys expired or evicted lately, with their deadline, oldest first.
    recently_expired: VecDeque<(Correlation, u64)>,
    recently_expired_set: HashSet<Correlation>,
    /// Keys decided while not registered (bounded like `recently_expired`).
    decided_unregistered: VecDeque<Correlation>,
    decided_unregistered_set: HashSet<Correlation>,
    next_order: u64,
    counts: DeadlineCounts,
}

impl DeadlineTracker {
    /// A tracker holding at most `capacity` pending items (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            pending: HashMap::with_capacity(capacity),
            by_deadline: BTreeMap::new(),
            recently_expired: VecDeque::with_capacity(capacity),
            recently_expired_set: HashSet::with_capacity(capacity),
            decided_unregistered: VecDeque::with_capacity(capacity),
            decided_unregistered_set: HashSet::with_capacity(capacity),
            next_order: 0,
            counts: DeadlineCounts::default(),
        }
    }

    /// Starts waiting for a decision on `key` until `deadline_ns`.
    ///
    /// Registering a key that is already pending moves its deadline (it still leaves the
    /// tracker once). When the tracker is full, the pending item with the earliest deadline is
    /// evicted and returned: apply the fail-safe to it.
    pub fn register(&mut self, key: Correlation, deadline_ns: u64) -> Option<Correlation> {
        if let Some(existing) = self.pending.get_mut(&key) {
            let old = (existing.deadline_ns, existing.order);
            existing.deadline_ns = deadline_ns;
            self.by_deadline.remove(&old);
            self.by_deadline.insert((deadline_ns, old.1), key);
            return None;
        }
        if self.decided_unregistered_set.remove(&key) {
            // Its decision came first (and was applied): nothing to wait for.
            self.decided_unregistered.retain(|k| k != &key);
            self.counts.decided_before_registered += 1;
            return None;
        }
        self.counts.registered += 1;
        if self.recently_expired_set.remove(&key) {
            // Seen before under the same key (a replayed seq): forget the old expiry.
            self.recently_expired.retain(|(k, _)| k != &key);
        }
        let mut evicted = None;
        if self.pending.len() >= self.capacity
            && let Some(((deadline, _), oldest)) = self.by_deadline.pop_first()
        {
            self.pending.remove(&oldest);
            self.counts.evicted += 1;
            self.remember_expired(oldest.clone(), deadline);
            evicted = Some(oldest);
        }
        let order = self.next_order;
        self.next_order += 1;
        self.by_deadline.insert((deadline_ns, order), key.clone());
        self.pending.insert(
            key,
            Pending {
                deadline_ns,
                order,
                late_reported: false,
            },
        );
        evicted
    }

    /// Classifies a decision arriving at `now_ns`. An accepted item stops being tracked; a late
    /// one stays until [`Self::expire`] returns it (so the fail-safe is applied once, in order).
    pub fn on_decision(&mut self, decision: &Decision, now_ns: u64) -> DeadlineOutcome {
        let key = &decision.key;
        if let Some(pending) = self.pending.get_mut(key) {
            if now_ns <= pending.deadline_ns {
                let order = pending.order;
                let deadline = pending.deadline_ns;
                self.pending.remove(key);
                self.by_deadline.remove(&(deadline, order));
                self.counts.accepted += 1;
                return DeadlineOutcome::Accepted;
            }
            if !pending.late_reported {
                pending.late_reported = true;
                self.counts.late += 1;
                return DeadlineOutcome::Late {
                    late_by_ns: now_ns - pending.deadline_ns,
                };
            }
        } else if self.recently_expired_set.remove(key) {
            let deadline = self
                .recently_expired
                .iter()
                .position(|(k, _)| k == key)
                .and_then(|i| self.recently_expired.remove(i))
                .map_or(0, |(_, d)| d);
            self.counts.late += 1;
            return DeadlineOutcome::Late {
                late_by_ns: now_ns.saturating_sub(deadline),
            };
        }
        self.counts.unknown += 1;
        if !self.pending.contains_key(key) && !self.decided_unregistered_set.contains(key) {
            if self.decided_unregistered.len() >= self.capacity
                && let Some(oldest) = self.decided_unregistered.pop_front()
            {
                self.decided_unregistered_set.remove(&oldest);
            }
            self.decided_unregistered_set.insert(key.clone());
            self.decided_unregistered.push_back(key.clone());
        }
        DeadlineOutcome::Unknown
    }

    /// Removes and returns, earliest deadline first, every item whose deadline is before
    /// `now_ns` and that got no accepted decision.
    pub fn expire(&mut self, now_ns: u64) -> Vec<Correlation> {
        let mut expired = Vec::new();
        while let Some(entry) = self.by_deadline.first_entry() {
            let (deadline, _) = *entry.key();
            if deadline >= now_ns {
                break;
            }
            let key = entry.remove();
            let late_reported = self.pending.remove(&key).is_some_and(|p| p.late_reported);
            self.counts.expired += 1;
            if !late_reported {
                // A late decision for it may still come: remember it to report `Late`.
                self.remember_expired(key.clone(), deadline);
            }
            expired.push(key);
        }
        expired
    }

    /// The earliest pending deadline, to arm a timer.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.by_deadline
            .keys()
            .next()
            .map(|&(deadline, _)| deadline)
    }

    /// Number of items awaiting a decision.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Counters since creation.
    pub fn counts(&self) -> DeadlineCounts {
        self.counts
    }

    fn remember_expired(&mut self, key: Correlation, deadline_ns: u64) {
        if self.recently_expired.len() >= self.capacity
            && let Some((oldest, _)) = self.recently_expired.pop_front()
        {
            self.recently_expired_set.remove(&oldest);
        }
        self.recently_expired_set.insert(key.clone());
        self.recently_expired.push_back((key, deadline_ns));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_acquisition_arriving_after_its_decision_starts_no_deadline() {
        let mut t = DeadlineTracker::new(8);
        let d = Decision {
            key: Correlation::new("press-01", 11, 5),
            ..Decision::default()
        };
        assert_eq!(t.on_decision(&d, 10), DeadlineOutcome::Unknown);
        assert_eq!(t.register(d.key.clone(), 20), None);
        assert!(
            t.expire(1_000).is_empty(),
            "no fail-safe for a decided item"
        );
        assert_eq!(t.counts().decided_before_registered, 1);
        // A later registration of the same key (a replayed seq) is tracked again.
        assert_eq!(t.register(d.key.clone(), 2_000), None);
        assert_eq!(t.expire(3_000), vec![d.key]);
    }

    fn key(seq: u64) -> Correlation {
        Correlation::new("press-07", seq, seq * 10)
    }

    fn decided(seq: u64) -> Decision {
        Decision {
            key: key(seq),
            ..Decision::default()
        }
    }

    #[test]
    fn in_time_is_accepted_and_not_expired() {
        let mut t = DeadlineTracker::new(8);
        assert_eq!(t.register(key(1), 100), None);
        assert_eq!(t.next_deadline_ns(), Some(100));
        assert_eq!(t.on_decision(&decided(1), 100), DeadlineOutcome::Accepted);
        assert!(t.expire(1_000).is_empty());
        assert_eq!(
            t.on_decision(&decided(1), 101),
            DeadlineOutcome::Unknown,
            "duplicate"
        );
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn expired_then_late_decision_is_reported_late_once() {
        let mut t = DeadlineTracker::new(8);
        t.register(key(1), 100);
        t.register(key(2), 50);
        assert!(
            t.expire(50).is_empty(),
            "deadline == now is not expired yet"
        );
        assert_eq!(
            t.expire(101),
            vec![key(2), key(1)],
            "earliest deadline first"
        );
        assert_eq!(
            t.on_decision(&decided(1), 130),
            DeadlineOutcome::Late { late_by_ns: 30 }
        );
        assert_eq!(t.on_decision(&decided(1), 131), DeadlineOutcome::Unknown);
        assert_eq!(t.on_decision(&decided(9), 131), DeadlineOutcome::Unknown);
        let c = t.counts();
        assert_eq!(
            (c.registered, c.expired, c.late, c.unknown, c.accepted),
            (2, 2, 1, 2, 0)
        );
    }

    #[test]
    fn late_before_expire_is_not_applied_and_still_expires_once() {
        let mut t = DeadlineTracker::new(8);
        t.register(key(1), 100);
        assert_eq!(
            t.on_decision(&decided(1), 150),
            DeadlineOutcome::Late { late_by_ns: 50 }
        );
        assert_eq!(t.expire(150), vec![key(1)]);
        assert!(t.expire(10_000).is_empty());
        assert_eq!(t.on_decision(&decided(1), 200), DeadlineOutcome::Unknown);
    }

    #[test]
    fn full_tracker_evicts_earliest_deadline_and_counts_it() {
        let mut t = DeadlineTracker::new(2);
        t.register(key(1), 300);
        t.register(key(2), 100);
        assert_eq!(t.register(key(3), 200), Some(key(2)));
        assert_eq!(t.pending(), 2);
        assert_eq!(t.counts().evicted, 1);
        assert_eq!(
            t.on_decision(&decided(2), 50),
            DeadlineOutcome::Late { late_by_ns: 0 }
        );
        assert_eq!(t.expire(1_000), vec![key(3), key(1)]);
    }

    #[test]
    fn re_registering_moves_the_deadline() {
        let mut t = DeadlineTracker::new(4);
        t.register(key(1), 100);
        t.register(key(1), 500);
        assert!(t.expire(200).is_empty());
        assert_eq!(t.counts().registered, 1);
        assert_eq!(t.expire(501), vec![key(1)]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Register { seq: u64, deadline: u64 },
        Decide { seq: u64 },
        Expire,
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0_u64..40, 0_u64..200).prop_map(|(seq, deadline)| Op::Register { seq, deadline }),
            (0_u64..40).prop_map(|seq| Op::Decide { seq }),
            Just(Op::Expire),
            (0_u64..50).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Each registered item is decided (accepted), expired or evicted exactly once, an
        /// accepted decision is never after the deadline, and memory stays bounded.
        #[test]
        fn each_item_leaves_exactly_once(ops in prop::collection::vec(op(), 0..300), capacity in 1_usize..12) {
            let mut t = DeadlineTracker::new(capacity);
            let mut now = 0_u64;
            let mut deadlines: HashMap<Correlation, u64> = HashMap::new();
            let mut live: HashSet<Correlation> = HashSet::new();
            let mut left: HashMap<Correlation, u32> = HashMap::new();
            let mut registrations: HashMap<Correlation, u32> = HashMap::new();
            // Keys decided while not registered (the tracker ignores their next registration).
            let mut early: VecDeque<Correlation> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Register { seq, deadline } => {
                        let deadline = now + deadline;
                        if !live.contains(&key(seq)) && early.contains(&key(seq)) {
                            // Decided before it was registered: no deadline starts.
                            early.retain(|k| k != &key(seq));
                            prop_assert_eq!(t.register(key(seq), deadline), None);
                            continue;
                        }
                        if !live.contains(&key(seq)) {
                            *registrations.entry(key(seq)).or_default() += 1;
                        }
                        live.insert(key(seq));
                        deadlines.insert(key(seq), deadline);
                        if let Some(evicted) = t.register(key(seq), deadline) {
                            prop_assert!(live.remove(&evicted));
                            *left.entry(evicted).or_default() += 1;
                        }
                    }
                    Op::Decide { seq } => {
                        let outcome = t.on_decision(&decided(seq), now);
                        if outcome == DeadlineOutcome::Unknown
                            && !live.contains(&key(seq))
                            && !early.contains(&key(seq))
                        {
                            if early.len() >= capacity {
                                early.pop_front();
                            }
                            early.push_back(key(seq));
                        }
                        if outcome == DeadlineOutcome::Accepted {
                            prop_assert!(live.remove(&key(seq)), "accepted an item not pending");
                            prop_assert!(now <= deadlines[&key(seq)], "accepted after the deadline");
                            *left.entry(key(seq)).or_default() += 1;
                        }
                    }
                    Op::Expire => {
                        for k in t.expire(now) {
                            prop_assert!(deadlines[&k] < now, "expired before its deadline");
                            prop_assert!(live.remove(&k), "expired an item not pending");
                            *left.entry(k).or_default() += 1;
                        }
                    }
                    Op::Advance(dt) => now += dt,
                }
                prop_assert!(t.pending() <= capacity);
                prop_assert_eq!(t.pending(), live.len());
                prop_assert!(t.recently_expired.len() <= capacity);
            }
            // Drain: everything still pending expires once.
            for k in t.expire(u64::MAX) {
                prop_assert!(live.remove(&k));
                *left.entry(k).or_default() += 1;
            }
            prop_assert!(live.is_empty());
            // A key may be registered again after it left; it must leave once per registration.
            prop_assert_eq!(left, registrations);
        }
    }
}
