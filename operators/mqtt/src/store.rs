//! The durable local queue (redb): entries survive a process kill until the broker acked them.
//!
//! One table per [`Kind`], keyed by a global, increasing entry id, so that entries are sent in
//! the order they were accepted (merged across kinds by id) and the lowest-priority kind can be
//! evicted oldest-first when the byte cap is reached. Alerts and health events are committed
//! with fsync before [`Store::append`] returns; scores (QoS 0, droppable by design) and ack
//! removals are committed without fsync, made durable by the next fsync'd commit (at the latest
//! every [`SYNC_EVERY`] commits), so a kill can at worst lose recent scores or resend acked
//! entries, never lose an accepted alert.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::Serialize;

use crate::error::StoreError;

/// What an entry is; also its priority when the queue is full (scores go first, alerts last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A score (QoS 0, sampled, dropped first).
    Score,
    /// A health event (QoS 1).
    Health,
    /// An alert (QoS 1, dropped last).
    Alert,
}

impl Kind {
    /// Every kind, lowest priority first.
    pub const ALL: [Kind; 3] = [Kind::Score, Kind::Health, Kind::Alert];

    /// The kind's name (`score`, `health`, `alert`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Score => "score",
            Kind::Health => "health",
            Kind::Alert => "alert",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn table(self) -> TableDefinition<'static, u64, &'static [u8]> {
        match self {
            Kind::Score => SCORES,
            Kind::Health => HEALTH,
            Kind::Alert => ALERTS,
        }
    }
}

const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
const HEALTH: TableDefinition<u64, &[u8]> = TableDefinition::new("health");
const SCORES: TableDefinition<u64, &[u8]> = TableDefinition::new("scores");

/// Bytes counted per entry on top of its topic and payload (key, length, B-tree overhead).
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;
/// At most this many commits without fsync in a row.
pub const SYNC_EVERY: u32 = 32;

/// One queued publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Global order of acceptance.
    pub id: u64,
    /// What it is.
    pub kind: Kind,
    /// MQTT topic.
    pub topic: String,
    /// MQTT payload.
    pub payload: Vec<u8>,
}

/// Why an entry was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The cap is reached and only entries of equal or higher priority are queued.
    QueueFull,
    /// The entry alone is larger than the cap.
    TooLarge,
    /// `max_score_backlog` scores are already waiting.
    ScoreBacklog,
}

/// What [`Store::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Stored (durably for alerts and health) with this id; `evicted` lower-priority entries
    /// were dropped to make room, counted per kind (index = [`Kind`] order: score, health, alert).
    Stored {
        /// The entry's id.
        id: u64,
        /// Entries evicted to make room, per kind.
        evicted: [u64; 3],
    },
    /// Not stored.
    Dropped(DropReason),
}

/// Entries and bytes queued, per kind (index = [`Kind`] order: score, health, alert).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Entries per kind.
    pub entries: [u64; 3],
    /// Counted bytes per kind (topic + payload + [`ENTRY_OVERHEAD_BYTES`]).
    pub bytes: [u64; 3],
}

impl QueueStats {
    /// All entries.
    pub fn total_entries(&self) -> u64 {
        self.entries.iter().sum()
    }

    /// All counted bytes.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().sum()
    }
}

struct State {
    stats: QueueStats,
    next_id: u64,
    unsynced_commits: u32,
}

/// The durable queue. Shared (`Arc`) between the producer and the publishing worker.
pub struct Store {
    db: Database,
    path: PathBuf,
    cap_bytes: u64,
    state: Mutex<State>,
}

/// Counted bytes of an entry.
pub fn entry_cost(topic: &str, payload: &[u8]) -> u64 {
    (topic.len() + payload.len()) as u64 + ENTRY_OVERHEAD_BYTES
}

fn encode(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + topic.len() + payload.len());
    // Topics are bounded by MQTT to 65535 bytes; the length is checked by the caller.
    out.extend_from_slice(&u32::try_from(topic.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(payload);
    out
}

fn decode(bytes: &[u8]) -> Result<(String, Vec<u8>), String> {
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(|| {
        format!(
            "{} bytes, shorter than the 4-byte topic length",
            bytes.len()
        )
    })?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(format!(
            "topic length {len} exceeds the entry ({} bytes)",
            rest.len()
        ));
    }
    let (topic, payload) = rest.split_at(len);
    let topic = std::str::from_utf8(topic)
        .map_err(|e| format!("topic is not UTF-8: {e}"))?
        .to_owned();
    Ok((topic, payload.to_vec()))
}

/// Cost of a stored value (the encoded form holds a 4-byte length instead of nothing).
fn stored_cost(value_len: usize) -> u64 {
    (value_len as u64).saturating_sub(4) + ENTRY_OVERHEAD_BYTES
}

impl Store {
    /// Opens (or creates) the queue at `path`, capped at `cap_bytes` counted bytes. What was
    /// queued and not acked before (even by a killed process) is there again.
    pub fn open(path: &Path, cap_bytes: u64) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut store = Self {
            db,
            path: path.to_owned(),
            cap_bytes,
            state: Mutex::new(State {
                stats: QueueStats::default(),
                next_id: 1,
                unsynced_commits: 0,
            }),
        };
        store.init()?;
        Ok(store)
    }

    fn io<E: std::fmt::Display>(&self, operation: &'static str) -> impl Fn(E) -> StoreError + '_ {
        move |e| StoreError::Io {
            path: self.path.clone(),
            operation,
            reason: e.to_string(),
        }
    }

    fn init(&mut self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(self.io("open tables"))?;
        for kind in Kind::ALL {
            txn.open_table(kind.table())
                .map_err(self.io("open tables"))?;
        }
        txn.commit().map_err(self.io("open tables"))?;
        let read = self.db.begin_read().map_err(self.io("scan"))?;
        let mut stats = QueueStats::default();
        let mut max_id = 0;
        for kind in Kind::ALL {
            let table = read.open_table(kind.table()).map_err(self.io("scan"))?;
            for item in table.iter().map_err(self.io("scan"))? {
                let (id, value) = item.map_err(self.io("scan"))?;
                let len = value.value().len();
                if len < 4 {
                    return Err(StoreError::Corrupt {
                        path: self.path.clone(),
                        id: id.value(),
                        reason: format!("{len} bytes, shorter than the 4-byte topic length"),
                    });
                }
                stats.entries[kind.index()] += 1;
                stats.bytes[kind.index()] += stored_cost(len);
                max_id = max_id.max(id.value());
            }
        }
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        state.stats = stats;
        state.next_id = max_id + 1;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The queue file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The byte cap.
    pub fn cap_bytes(&self) -> u64 {
        self.cap_bytes
    }

    /// Entries and bytes queued now.
    pub fn stats(&self) -> QueueStats {
        self.lock().stats
    }

    /// Appends an entry; for alerts and health it is on disk (fsync) when this returns.
    ///
    /// When the cap would be exceeded, the oldest entries of lower-priority kinds are evicted
    /// (scores first, then health); if that cannot make room the new entry is dropped.
    pub fn append(
        &self,
        kind: Kind,
        topic: &str,
        payload: &[u8],
        max_score_backlog: u64,
    ) -> Result<Admission, StoreError> {
        let cost = entry_cost(topic, payload);
        let mut state = self.lock();
        if cost > self.cap_bytes {
            return Ok(Admission::Dropped(DropReason::TooLarge));
        }
        if kind == Kind::Score && state.stats.entries[Kind::Score.index()] >= max_score_backlog {
            return Ok(Admission::Dropped(DropReason::ScoreBacklog));
        }
        let need = (state.stats.total_bytes() + cost).saturating_sub(self.cap_bytes);
        let evictable: u64 = Kind::ALL
            .iter()
            .filter(|k| **k < kind)
            .map(|k| state.stats.bytes[k.index()])
            .sum();
        if need > evictable {
            return Ok(Admission::Dropped(DropReason::QueueFull));
        }
        let id = state.next_id;
        let mut evicted = [0_u64; 3];
        let mut freed = [0_u64; 3];
        let durable = kind != Kind::Score || state.unsynced_commits >= SYNC_EVERY;
        let mut txn = self.db.begin_write().map_err(self.io("append"))?;
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(self.io("append"))?;
        }
        {
            let mut to_free = need;
            for victim in Kind::ALL.into_iter().filter(|k| *k < kind) {
                if to_free == 0 {
                    break;
                }
                let mut table = txn.open_table(victim.table()).map_err(self.io("evict"))?;
                while to_free > 0 {
                    let Some((_, value)) = table.pop_first().map_err(self.io("evict"))? else {
                        break;
                    };
                    let c = stored_cost(value.value().len());
                    evicted[victim.index()] += 1;
                    freed[victim.index()] += c;
                    to_free = to_free.saturating_sub(c);
                }
            }
            let mut table = txn.open_table(kind.table()).map_err(self.io("append"))?;
            table
                .insert(id, encode(topic, payload).as_slice())
                .map_err(self.io("append"))?;
        }
        txn.commit().map_err(self.io("append (commit)"))?;
        state.unsynced_commits = if durable {
            0
        } else {
            state.unsynced_commits + 1
        };
        state.next_id += 1;
        for k in Kind::ALL {
            state.stats.entries[k.index()] -= evicted[k.index()];
            state.stats.bytes[k.index()] -= freed[k.index()];
        }
        state.stats.entries[kind.index()] += 1;
        state.stats.bytes[kind.index()] += cost;
        Ok(Admission::Stored { id, evicted })
    }

    /// Up to `max` entries with an id greater than `after`, in id order (all kinds merged).
    pub fn next_batch(&self, after: u64, max: usize) -> Result<Vec<Entry>, StoreError> {
        let read = self.db.begin_read().map_err(self.io("read next"))?;
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let table = read
                .open_table(kind.table())
                .map_err(self.io("read next"))?;
            let range = table
                .range(after.saturating_add(1)..)
                .map_err(self.io("read next"))?;
            for item in range.take(max) {
                let (id, value) = item.map_err(self.io("read next"))?;
                let id = id.value();
                let (topic, payload) =
                    decode(value.value()).map_err(|reason| StoreError::Corrupt {
                        path: self.path.clone(),
                        id,
                        reason,
                    })?;
                out.push(Entry {
                    id,
                    kind,
                    topic,
                    payload,
                });
            }
        }
        out.sort_unstable_by_key(|e| e.id);
        out.truncate(max);
        Ok(out)
    }

    /// Removes acknowledged entries (absent ids, e.g. evicted ones, are skipped); returns how
    /// many were removed. Committed without fsync: a kill may resend them (at-least-once).
    pub fn remove(&self, entries: &[(Kind, u64)]) -> Result<usize, StoreError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut state = self.lock();
        let durable = state.unsynced_commits >= SYNC_EVERY;
        let mut txn = self.db.begin_write().map_err(self.io("remove acked"))?;
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(self.io("remove acked"))?;
        }
        let mut removed = [0_u64; 3];
        let mut freed = [0_u64; 3];
        for kind in Kind::ALL {
            if !entries.iter().any(|(k, _)| *k == kind) {
                continue;
            }
            let mut table = txn
                .open_table(kind.table())
                .map_err(self.io("remove acked"))?;
            for (_, id) in entries.iter().filter(|(k, _)| *k == kind) {
                if let Some(value) = table.remove(*id).map_err(self.io("remove acked"))? {
                    removed[kind.index()] += 1;
                    freed[kind.index()] += stored_cost(value.value().len());
                }
            }
        }
        txn.commit().map_err(self.io("remove acked (commit)"))?;
        state.unsynced_commits = if durable {
            0
        } else {
            state.unsynced_commits + 1
        };
        for k in Kind::ALL {
            state.stats.entries[k.index()] -= removed[k.index()];
            state.stats.bytes[k.index()] -= freed[k.index()];
        }
        Ok(removed.iter().sum::<u64>() as usize)
    }

    /// Makes every earlier commit durable (an empty fsync'd commit).
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        let txn = self.db.begin_write().map_err(self.io("sync"))?;
        txn.commit().map_err(self.io("sync"))?;
        state.unsynced_commits = 0;
        Ok(())
    }

    /// Entries in the database file itself (a check of the in-memory counts, for tests).
    pub fn count_on_disk(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read().map_err(self.io("count"))?;
        let mut n = 0;
        for kind in Kind::ALL {
            let table = read.open_table(kind.table()).map_err(self.io("count"))?;
            n += table.len().map_err(self.io("count"))?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn store(dir: &tempfile::TempDir, cap: u64) -> Store {
        Store::open(&dir.path().join("q.redb"), cap).unwrap()
    }

    fn ids(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.id).collect()
    }

    #[test]
    fn entries_come_back_in_acceptance_order_across_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir, 1 << 20);
        s.append(Kind::Alert, "a", b"1", 10).unwrap();
        s.append(Kind::Score, "s", b"2", 10).unwrap();
        s.append(Kind::Health, "h", b"3", 10).unwrap();
        s.append(Kind::Alert, "a", b"4", 10).unwrap();
        let all = s.next_batch(0, 10).unwrap();
        assert_eq!(ids(&all), [1, 2, 3, 4]);
        assert_eq!(all[2].kind, Kind::Health);
        assert_eq!(all[2].topic, "h");
        assert_eq!(all[3].payload, b"4");
        assert_eq!(ids(&s.next_batch(2, 1).unwrap()), [3]);
        assert_eq!(s.remove(&[(Kind::Score, 2), (Kind::Alert, 99)]).unwrap(), 1);
        assert_eq!(ids(&s.next_batch(0, 10).unwrap()), [1, 3, 4]);
        assert_eq!(s.stats().total_entries(), 3);
    }

    #[test]
    fn reopened_after_drop_without_sync_keeps_unacked_entries() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = store(&dir, 1 << 20);
            for i in 0..5_u8 {
                s.append(Kind::Alert, "a", &[i], 10).unwrap();
            }
            s.remove(&[(Kind::Alert, 1)]).unwrap();
        }
        let s = store(&dir, 1 << 20);
        let left = s.next_batch(0, 10).unwrap();
        // The removal was not fsync'd: entry 1 may or may not come back (at-least-once),
        // entries 2..=5 must.
        assert!(ids(&left).ends_with(&[2, 3, 4, 5]), "{:?}", ids(&left));
        assert_eq!(s.stats().total_entries(), left.len() as u64);
        let Admission::Stored { id, .. } = s.append(Kind::Alert, "a", b"x", 10).unwrap() else {
            panic!("not stored")
        };
        assert_eq!(id, 6, "ids continue after the highest stored one");
    }

    #[test]
    fn full_queue_evicts_scores_then_health_and_never_alerts_for_lower_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let payload = [0_u8; 936]; // 1 + 936 + 64 = 1001 bytes per entry with a 1-byte topic
        let cost = entry_cost("t", &payload);
        let s = store(&dir, 10 * cost);
        for _ in 0..4 {
            s.append(Kind::Score, "t", &payload, 100).unwrap();
        }
        for _ in 0..3 {
            s.append(Kind::Health, "t", &payload, 100).unwrap();
        }
        for _ in 0..3 {
            s.append(Kind::Alert, "t", &payload, 100).unwrap();
        }
        assert_eq!(s.stats().total_bytes(), 10 * cost);
        // Full: a score cannot evict anything.
        assert_eq!(
            s.append(Kind::Score, "t", &payload, 100).unwrap(),
            Admission::Dropped(DropReason::QueueFull)
        );
        // A health event evicts the oldest score.
        let Admission::Stored { evicted, .. } = s.append(Kind::Health, "t", &payload, 100).unwrap()
        else {
            panic!()
        };
        assert_eq!(evicted, [1, 0, 0]);
        // Alerts evict the 3 remaining scores, then health.
        for _ in 0..4 {
            s.append(Kind::Alert, "t", &payload, 100).unwrap();
        }
        let st = s.stats();
        assert_eq!(st.entries, [0, 3, 7]);
        // Health cannot evict alerts nor health.
        assert_eq!(
            s.append(Kind::Health, "t", &payload, 100).unwrap(),
            Admission::Dropped(DropReason::QueueFull)
        );
        for _ in 0..3 {
            s.append(Kind::Alert, "t", &payload, 100).unwrap();
        }
        assert_eq!(s.stats().entries, [0, 0, 10]);
        // Full of alerts: the new alert is dropped, the queued ones are kept.
        assert_eq!(
            s.append(Kind::Alert, "t", &payload, 100).unwrap(),
            Admission::Dropped(DropReason::QueueFull)
        );
        assert_eq!(s.count_on_disk().unwrap(), 10);
        assert_eq!(
            s.append(Kind::Alert, "t", &[0; 20_000], 100).unwrap(),
            Admission::Dropped(DropReason::TooLarge)
        );
    }

    #[test]
    fn score_backlog_limit_drops_scores() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir, 1 << 20);
        s.append(Kind::Score, "s", b"1", 2).unwrap();
        s.append(Kind::Score, "s", b"2", 2).unwrap();
        assert_eq!(
            s.append(Kind::Score, "s", b"3", 2).unwrap(),
            Admission::Dropped(DropReason::ScoreBacklog)
        );
    }

    #[test]
    fn disk_file_stays_bounded_under_churn() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 256 * 1024;
        let s = store(&dir, cap);
        let payload = vec![7_u8; 300];
        let mut dropped = 0;
        for round in 0..20_u64 {
            for _ in 0..1000 {
                if let Admission::Dropped(_) =
                    s.append(Kind::Score, "t", &payload, 1_000_000).unwrap()
                {
                    dropped += 1;
                }
            }
            let batch = s.next_batch(0, 500).unwrap();
            let acked: Vec<_> = batch.iter().map(|e| (e.kind, e.id)).collect();
            s.remove(&acked).unwrap();
            assert!(s.stats().total_bytes() <= cap, "round {round}");
        }
        s.sync().unwrap();
        assert!(dropped > 0);
        let file = std::fs::metadata(s.path()).unwrap().len();
        println!("queue file after churn: {file} bytes for a {cap}-byte cap");
        assert!(
            file < 16 * cap,
            "queue file {file} bytes for a {cap}-byte cap"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn counts_match_disk_and_cap_holds(ops in proptest::collection::vec((0_u8..4, 0_usize..600), 1..80)) {
            let dir = tempfile::tempdir().unwrap();
            let cap = 8 * 1024;
            let s = store(&dir, cap);
            for (op, len) in ops {
                match op {
                    0..=2 => {
                        let kind = Kind::ALL[op as usize];
                        let _ = s.append(kind, "topic", &vec![1; len], 5).unwrap();
                    }
                    _ => {
                        let first = s.next_batch(0, 3).unwrap();
                        let acked: Vec<_> = first.iter().map(|e| (e.kind, e.id)).collect();
                        s.remove(&acked).unwrap();
                    }
                }
                prop_assert!(s.stats().total_bytes() <= cap);
                prop_assert_eq!(s.stats().total_entries(), s.count_on_disk().unwrap());
                let all = s.next_batch(0, usize::MAX).unwrap();
                prop_assert!(all.windows(2).all(|w| w[0].id < w[1].id));
            }
        }
    }
}
