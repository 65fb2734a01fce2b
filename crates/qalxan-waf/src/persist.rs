//! Persistent collections (`IP`, `GLOBAL`, `SESSION`, `USER`, `RESOURCE`): what `initcol`
//! opens and what outlives the transaction, as ModSecurity v2 keeps them.
//!
//! A rule set counts across requests with them: `initcol:ip=%{remote_addr}`, then
//! `setvar:ip.failed_logins=+1,expirevar:ip.failed_logins=600` and a rule on
//! `IP:FAILED_LOGINS`. The semantics follow ModSecurity v2's `collection_store`:
//!
//! - A record is read when `initcol` runs and written back once, when the transaction ends,
//!   only if the transaction changed it (so a flood of new keys that change nothing stores
//!   nothing).
//! - Counters change by their delta: two transactions that both `+=1` the same variable at
//!   once leave it 2 higher, not 1. A variable set outright takes the transaction's value.
//! - `expirevar` gives one variable a lifetime; the record itself lives `TIMEOUT` seconds
//!   (`SecCollectionTimeout`, default 3600) after its last update. Expired variables and
//!   records are gone the next time they are read.
//! - Built-in variables: `KEY`, `TIMEOUT`, `CREATE_TIME`, `LAST_UPDATE_TIME`,
//!   `UPDATE_COUNTER`, `IS_NEW`.
//!
//! The store is in memory, shared by every thread that evaluates transactions (sharded
//! mutexes, held only to copy a record in or merge it back) and bounded: past `max_records`
//! expired records are swept, and if none has expired a new record is not kept.
//! It is independent of any `Plan`, so counters survive a rule reload.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const SHARDS: usize = 16;

/// Variables the engine maintains in every record; rules may read them.
pub const BUILT_IN: [&str; 6] = [
    "key",
    "timeout",
    "create_time",
    "last_update_time",
    "update_counter",
    "is_new",
];

#[derive(Debug, Clone, Default)]
struct Record {
    vars: HashMap<String, Vec<u8>>,
    /// Unix seconds after which a variable is gone (`expirevar`).
    var_expiry: HashMap<String, u64>,
    created: u64,
    updated: u64,
    update_counter: u64,
    timeout: u64,
}

impl Record {
    fn expired(&self, now: u64) -> bool {
        self.updated.saturating_add(self.timeout) <= now
    }

    fn drop_expired_vars(&mut self, now: u64) {
        let vars = &mut self.vars;
        self.var_expiry.retain(|name, at| {
            let live = *at > now;
            if !live {
                vars.remove(name);
            }
            live
        });
    }
}

/// What one transaction did to one open collection, for merging back.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Variables set or deleted outright: their final value in the transaction wins.
    pub set: HashSet<String>,
    /// Variables only added to or subtracted from: their net change.
    pub deltas: HashMap<String, i64>,
    /// Lifetimes in seconds from the end of the transaction.
    pub expire: HashMap<String, u64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.deltas.is_empty() && self.expire.is_empty()
    }
}

/// The store of persistent collections. Create one per process (or per gateway) and hand it
/// to every transaction with [`crate::Transaction::with_collections`].
pub struct Collections {
    shards: Vec<Mutex<HashMap<(String, String), Record>>>,
    max_records: usize,
    hasher: std::collections::hash_map::RandomState,
    clock: fn() -> u64,
}

impl std::fmt::Debug for Collections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collections")
            .field("records", &self.len())
            .field("max_records", &self.max_records)
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Collections {
    /// A store that keeps at most `max_records` records (all collections together).
    pub fn new(max_records: usize) -> Collections {
        Collections::with_clock(max_records, unix_now)
    }

    /// The same, with a clock of Unix seconds of the caller's (tests).
    pub fn with_clock(max_records: usize, clock: fn() -> u64) -> Collections {
        Collections {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_records: max_records.max(1),
            hasher: Default::default(),
            clock,
        }
    }

    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }

    fn shard(&self, collection: &str, key: &str) -> &Mutex<HashMap<(String, String), Record>> {
        let mut h = self.hasher.build_hasher();
        collection.hash(&mut h);
        key.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    /// Records held now, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live variables of a record (built-ins included), as a rule would read them after
    /// `initcol`; `None` when there is no live record. For administration and tests.
    pub fn get(&self, collection: &str, key: &str) -> Option<HashMap<String, Vec<u8>>> {
        let vars = self.load(&collection.to_ascii_uppercase(), key, 3600);
        (vars.get("is_new").map(Vec::as_slice) != Some(b"1")).then_some(vars)
    }

    /// The live records of one collection, by key (at most `limit`), each with its
    /// variables (built-ins included). For administration: what a counting rule holds.
    pub fn list(&self, collection: &str, limit: usize) -> Vec<(String, HashMap<String, Vec<u8>>)> {
        let collection = collection.to_ascii_uppercase();
        let now = self.now();
        let mut keys: Vec<String> = Vec::new();
        for shard in &self.shards {
            let map = shard.lock().unwrap_or_else(|p| p.into_inner());
            keys.extend(
                map.iter()
                    .filter(|((c, _), r)| *c == collection && !r.expired(now))
                    .map(|((_, k), _)| k.clone()),
            );
        }
        keys.sort();
        keys.truncate(limit);
        keys.into_iter()
            .filter_map(|k| self.get(&collection, &k).map(|vars| (k, vars)))
            .collect()
    }

    /// Forgets a record (its counters start again); whether there was one.
    pub fn remove(&self, collection: &str, key: &str) -> bool {
        let collection = collection.to_ascii_uppercase();
        let id = (collection, key.to_owned());
        self.shard(&id.0, &id.1)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .is_some()
    }

    /// The variables a transaction sees when it opens `collection` under `key`: the stored
    /// record's live ones, or a new record's built-ins.
    pub(crate) fn load(
        &self,
        collection: &str,
        key: &str,
        default_timeout: u64,
    ) -> HashMap<String, Vec<u8>> {
        let mut vars = HashMap::new();
        self.load_into(collection, key, default_timeout, &mut vars);
        vars
    }

    /// [`Collections::load`] into the transaction's own table: the live variables are copied
    /// straight from the record under its shard's lock, with no copy of the whole record.
    pub(crate) fn load_into<S: BuildHasher>(
        &self,
        collection: &str,
        key: &str,
        default_timeout: u64,
        out: &mut HashMap<String, Vec<u8>, S>,
    ) {
        let now = self.now();
        let mut map = self
            .shard(collection, key)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let id = (collection.to_owned(), key.to_owned());
        let stored = match map.get_mut(&id) {
            Some(r) if r.expired(now) => {
                map.remove(&id);
                None
            }
            Some(r) => {
                r.drop_expired_vars(now);
                out.extend(r.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                Some((r.created, r.updated, r.update_counter, r.timeout))
            }
            None => None,
        };
        drop(map);
        let (created, updated, counter, timeout, new) = match stored {
            Some((created, updated, counter, timeout)) => {
                (created, updated, counter, timeout, false)
            }
            None => (now, now, 0, default_timeout, true),
        };
        let number = |n: u64| n.to_string().into_bytes();
        out.insert("key".into(), key.as_bytes().to_vec());
        out.insert("timeout".into(), number(timeout));
        out.insert("create_time".into(), number(created));
        out.insert("last_update_time".into(), number(updated));
        out.insert("update_counter".into(), number(counter));
        out.insert("is_new".into(), number(u64::from(new)));
    }

    /// Merges a transaction's changes into the stored record. `current` is the collection as
    /// the transaction left it.
    pub(crate) fn store<S: BuildHasher>(
        &self,
        collection: &str,
        key: &str,
        current: &HashMap<String, Vec<u8>, S>,
        changes: &Changes,
        default_timeout: u64,
    ) {
        if changes.is_empty() {
            return;
        }
        let now = self.now();
        let shard = self.shard(collection, key);
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let id = (collection.to_owned(), key.to_owned());
        if !map.contains_key(&id) && self.len_locked_over(&mut map, now) {
            return;
        }
        let record = map.entry(id).or_insert_with(|| Record {
            created: now,
            timeout: default_timeout,
            ..Record::default()
        });
        if record.expired(now) {
            *record = Record {
                created: now,
                timeout: default_timeout,
                ..Record::default()
            };
        }
        record.drop_expired_vars(now);
        for name in &changes.set {
            if name == "timeout" {
                if let Some(t) = current.get(name).and_then(|v| parse_u64(v)) {
                    record.timeout = t;
                }
                continue;
            }
            if BUILT_IN.contains(&name.as_str()) {
                continue;
            }
            match current.get(name) {
                Some(v) => {
                    record.vars.insert(name.clone(), v.clone());
                }
                None => {
                    record.vars.remove(name);
                    record.var_expiry.remove(name);
                }
            }
        }
        for (name, delta) in &changes.deltas {
            if changes.set.contains(name) || BUILT_IN.contains(&name.as_str()) {
                continue;
            }
            let was = record
                .vars
                .get(name)
                .map_or(0, |v| crate::operator::atoi(v));
            record.vars.insert(
                name.clone(),
                was.saturating_add(*delta).to_string().into_bytes(),
            );
        }
        for (name, seconds) in &changes.expire {
            if record.vars.contains_key(name) {
                record
                    .var_expiry
                    .insert(name.clone(), now.saturating_add(*seconds));
            }
        }
        record.updated = now;
        record.update_counter += 1;
    }

    /// Whether this shard holds its share of `max_records`, after sweeping its expired
    /// records (only when it is full: the sweep walks the shard).
    fn len_locked_over(&self, this: &mut HashMap<(String, String), Record>, now: u64) -> bool {
        let per_shard = self.max_records.div_ceil(SHARDS);
        if this.len() < per_shard {
            return false;
        }
        this.retain(|_, r| !r.expired(now));
        this.len() >= per_shard
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, Transaction};
    use std::cell::Cell;
    use std::path::Path;

    thread_local! {
        static NOW: Cell<u64> = const { Cell::new(1_000_000) };
    }

    fn clock() -> u64 {
        NOW.with(Cell::get)
    }

    fn advance(seconds: u64) {
        NOW.with(|n| n.set(n.get() + seconds));
    }

    const LOGIN_LIMIT: &str = r#"
SecRuleEngine On
SecCollectionTimeout 600
SecAction "id:1,phase:1,pass,nolog,initcol:ip=%{remote_addr}"
SecRule REQUEST_FILENAME "@streq /login" "id:2,phase:1,pass,nolog,setvar:ip.tries=+1,expirevar:ip.tries=60"
SecRule IP:TRIES "@gt 3" "id:3,phase:1,deny,status:429,msg:'too many tries: %{ip.tries}'"
"#;

    fn plan(rules: &str) -> crate::Plan {
        crate::compile::compile_str(rules, Path::new("rules.conf")).unwrap()
    }

    fn request(from: &str, path: &str) -> Request {
        Request {
            method: b"POST".to_vec(),
            uri: path.as_bytes().to_vec(),
            protocol: b"HTTP/1.1".to_vec(),
            headers: vec![("Host".into(), b"portal.example".to_vec())],
            remote_addr: from.into(),
            ..Request::default()
        }
    }

    /// The status a request gets, with the transaction finished (and stored).
    fn status(plan: &crate::Plan, store: &Collections, from: &str, path: &str) -> Option<u16> {
        let mut tx = Transaction::new(plan)
            .with_collections(store)
            .request(&request(from, path));
        tx.finish();
        tx.interruption.as_ref().map(|i| i.status)
    }

    #[test]
    fn counters_outlive_the_transaction_and_expire() {
        let plan = plan(LOGIN_LIMIT);
        let store = Collections::with_clock(1000, clock);
        for _ in 0..3 {
            assert_eq!(status(&plan, &store, "10.0.0.1", "/login"), None);
        }
        assert_eq!(status(&plan, &store, "10.0.0.1", "/login"), Some(429));
        // Another address has its own record; other paths do not count.
        assert_eq!(status(&plan, &store, "10.0.0.2", "/login"), None);
        assert_eq!(status(&plan, &store, "10.0.0.2", "/news"), None);
        let ip = store.get("ip", "10.0.0.1").unwrap();
        assert_eq!(ip["tries"], b"4");
        assert_eq!(ip["update_counter"], b"4");
        assert_eq!(ip["timeout"], b"600");
        // The counter's lifetime restarts with each update; a minute after the last it is
        // gone, while the record itself lives on for its timeout.
        advance(59);
        assert_eq!(status(&plan, &store, "10.0.0.1", "/login"), Some(429));
        advance(61);
        assert_eq!(status(&plan, &store, "10.0.0.1", "/login"), None);
        assert_eq!(store.get("ip", "10.0.0.1").unwrap()["tries"], b"1");
        // The record expires its timeout after its last update.
        advance(601);
        assert!(store.get("ip", "10.0.0.1").is_none());
    }

    #[test]
    fn records_are_listed_and_removed() {
        let plan = plan(LOGIN_LIMIT);
        let store = Collections::with_clock(1000, clock);
        for from in ["10.0.0.2", "10.0.0.1", "10.0.0.1"] {
            status(&plan, &store, from, "/login");
        }
        let listed = store.list("ip", 10);
        let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(listed[0].1["tries"], b"2");
        assert_eq!(store.list("ip", 1).len(), 1);
        assert!(store.list("global", 10).is_empty());
        assert!(store.remove("IP", "10.0.0.1"));
        assert!(!store.remove("IP", "10.0.0.1"));
        assert_eq!(store.list("IP", 10).len(), 1);
    }

    #[test]
    fn without_a_store_nothing_persists() {
        let plan = plan(LOGIN_LIMIT);
        for _ in 0..10 {
            let mut tx = Transaction::evaluate_request(&plan, &request("10.0.0.1", "/login"));
            tx.finish();
            assert!(tx.interruption.is_none());
        }
    }

    #[test]
    fn concurrent_counters_add_up_and_outright_values_win() {
        let plan = plan(
            r#"
SecAction "id:1,phase:1,pass,nolog,initcol:global=global"
SecAction "id:2,phase:1,pass,nolog,setvar:global.hits=+1,setvar:global.last=%{remote_addr}"
"#,
        );
        let store = Collections::with_clock(1000, clock);
        // Two transactions read the record before either writes it back.
        let mut a = Transaction::new(&plan)
            .with_collections(&store)
            .request(&request("10.0.0.1", "/"));
        let mut b = Transaction::new(&plan)
            .with_collections(&store)
            .request(&request("10.0.0.2", "/"));
        a.finish();
        b.finish();
        let global = store.get("GLOBAL", "global").unwrap();
        assert_eq!(global["hits"], b"2");
        assert_eq!(global["last"], b"10.0.0.2");
        assert_eq!(global["is_new"], b"0");
    }

    #[test]
    fn built_ins_and_deletion() {
        let plan = plan(
            r#"
SecAction "id:1,phase:1,pass,nolog,initcol:ip=%{remote_addr}"
SecRule IP:IS_NEW "@eq 1" "id:2,phase:1,pass,nolog,setvar:ip.seen=1,setvar:tx.first=1"
SecRule REQUEST_FILENAME "@streq /forget" "id:3,phase:1,pass,nolog,setvar:!ip.seen"
SecRule &IP:SEEN "@eq 0" "id:4,phase:1,deny,status:403,chain"
SecRule &TX:FIRST "@eq 0" ""
"#,
        );
        let store = Collections::with_clock(1000, clock);
        assert_eq!(status(&plan, &store, "10.0.0.9", "/"), None);
        assert_eq!(status(&plan, &store, "10.0.0.9", "/"), None);
        // Deleted, and the record is no longer new: denied from then on.
        assert_eq!(status(&plan, &store, "10.0.0.9", "/forget"), Some(403));
        assert_eq!(status(&plan, &store, "10.0.0.9", "/"), Some(403));
        let ip = store.get("IP", "10.0.0.9").unwrap();
        assert!(!ip.contains_key("seen"));
        assert_eq!(ip["key"], b"10.0.0.9");
    }

    #[test]
    fn the_store_is_bounded_and_unchanged_records_are_not_kept() {
        let plan = plan(LOGIN_LIMIT);
        let store = Collections::with_clock(64, clock);
        for i in 0..1000 {
            status(
                &plan,
                &store,
                &format!("10.1.{}.{}", i / 256, i % 256),
                "/news",
            );
        }
        assert!(store.is_empty());
        for i in 0..1000 {
            status(
                &plan,
                &store,
                &format!("10.1.{}.{}", i / 256, i % 256),
                "/login",
            );
        }
        assert!(store.len() <= 64, "{}", store.len());
        assert!(store.len() >= 32, "{}", store.len());
        // Once they expire, new addresses take their places.
        advance(3601);
        assert_eq!(status(&plan, &store, "10.2.0.1", "/login"), None);
        assert!(store.get("ip", "10.2.0.1").is_some());
    }
}
