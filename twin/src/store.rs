//! The object store: every object by (group, plural, namespace, name), one global
//! increasing resourceVersion, a bounded history of changes for watches (older
//! versions get 410 Gone, as from etcd after compaction) and an owner index for
//! garbage collection.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

/// Identifies a resource type (not a version: objects are stored once).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResKey {
    pub group: String,
    pub plural: String,
}

impl ResKey {
    pub fn new(group: &str, plural: &str) -> ResKey {
        ResKey {
            group: group.to_string(),
            plural: plural.to_string(),
        }
    }
}

/// Identifies one object. `namespace` is empty for cluster-scoped objects.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub res: ResKey,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as a watch will see it.
#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: EventType,
    pub key: ObjKey,
    /// The object after the change (for Deleted: the last state, with the deletion's rv).
    pub object: Arc<Value>,
    /// The object before the change, so watches with selectors can tell an object
    /// that stopped matching (sent as DELETED, as the watch cache does).
    pub previous: Option<Arc<Value>>,
}

type Bucket = BTreeMap<(String, String), Arc<Value>>;

pub struct Inner {
    rv: u64,
    objects: HashMap<ResKey, Bucket>,
    history: VecDeque<Arc<Change>>,
    history_cap: usize,
    /// resourceVersion of the oldest change that was dropped from history.
    compacted: u64,
    /// owner uid -> dependents (objects listing it in ownerReferences).
    dependents: HashMap<String, HashSet<ObjKey>>,
    /// uid -> object, to tell whether an owner still exists.
    uids: HashMap<String, ObjKey>,
}

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Change>>,
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

impl Store {
    pub fn new(history_cap: usize) -> Store {
        let (tx, _) = broadcast::channel(65_536);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: HashMap::new(),
                history: VecDeque::new(),
                history_cap: history_cap.max(1),
                compacted: 0,
                dependents: HashMap::new(),
                uids: HashMap::new(),
            }),
            tx,
        }
    }

    pub fn lock(&self) -> Txn<'_> {
        Txn {
            inner: self.inner.lock().unwrap_or_else(|e| e.into_inner()),
            tx: &self.tx,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }
}

/// A locked view of the store: reads and writes made through one `Txn` are atomic
/// with respect to other API calls and watches.
pub struct Txn<'a> {
    inner: MutexGuard<'a, Inner>,
    tx: &'a broadcast::Sender<Arc<Change>>,
}

impl Txn<'_> {
    pub fn current_rv(&self) -> u64 {
        self.inner.rv
    }

    pub fn get(&self, key: &ObjKey) -> Option<Arc<Value>> {
        self.inner
            .objects
            .get(&key.res)?
            .get(&(key.namespace.clone(), key.name.clone()))
            .cloned()
    }

    /// Objects of a resource, sorted by (namespace, name); `namespace` None = all.
    pub fn list(&self, res: &ResKey, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let Some(bucket) = self.inner.objects.get(res) else {
            return Vec::new();
        };
        match namespace {
            None => bucket.values().cloned().collect(),
            Some(ns) => bucket
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    /// Every namespaced object in `namespace`, across resources.
    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<ObjKey> {
        let mut out = Vec::new();
        for (res, bucket) in &self.inner.objects {
            for (ns, name) in bucket.keys() {
                if ns == namespace {
                    out.push(ObjKey {
                        res: res.clone(),
                        namespace: ns.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
        out
    }

    pub fn dependents_of(&self, uid: &str) -> Vec<ObjKey> {
        let mut v: Vec<ObjKey> = self
            .inner
            .dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn next_rv(&mut self) -> u64 {
        self.inner.rv += 1;
        self.inner.rv
    }

    pub fn uid_exists(&self, uid: &str) -> bool {
        self.inner.uids.contains_key(uid)
    }

    fn index(&mut self, key: &ObjKey, old: Option<&Value>, new: Option<&Value>) {
        if let Some(uid) = old.and_then(|o| meta_str(o, "uid")) {
            self.inner.uids.remove(uid);
        }
        if let Some(uid) = new.and_then(|o| meta_str(o, "uid")) {
            self.inner.uids.insert(uid.to_string(), key.clone());
        }
        for uid in old.map(owner_uids).unwrap_or_default() {
            if let Some(set) = self.inner.dependents.get_mut(&uid) {
                set.remove(key);
                if set.is_empty() {
                    self.inner.dependents.remove(&uid);
                }
            }
        }
        for uid in new.map(owner_uids).unwrap_or_default() {
            self.inner
                .dependents
                .entry(uid)
                .or_default()
                .insert(key.clone());
        }
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.inner.history.push_back(change.clone());
        while self.inner.history.len() > self.inner.history_cap {
            if let Some(old) = self.inner.history.pop_front() {
                self.inner.compacted = old.rv;
            }
        }
        // No receiver is fine: nobody watches.
        let _ = self.tx.send(change);
    }

    /// Stores `obj` (setting its resourceVersion) and records the change.
    pub fn put(&mut self, key: &ObjKey, mut obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let obj = Arc::new(obj);
        let previous = self
            .inner
            .objects
            .entry(key.res.clone())
            .or_default()
            .insert((key.namespace.clone(), key.name.clone()), obj.clone());
        self.index(key, previous.as_deref(), Some(&obj));
        let kind = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Change {
            rv,
            kind,
            key: key.clone(),
            object: obj.clone(),
            previous,
        });
        obj
    }

    /// Stores `obj` as another API server served it, keeping its resourceVersion
    /// (the mirror of a real kube-apiserver, `crate::client::remote`); the change
    /// still gets a local sequence number for the twin's own subscribers.
    pub fn put_verbatim(&mut self, key: &ObjKey, obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        let obj = Arc::new(obj);
        let previous = self
            .inner
            .objects
            .entry(key.res.clone())
            .or_default()
            .insert((key.namespace.clone(), key.name.clone()), obj.clone());
        self.index(key, previous.as_deref(), Some(&obj));
        let kind = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Change {
            rv,
            kind,
            key: key.clone(),
            object: obj.clone(),
            previous,
        });
        obj
    }

    /// Removes an object; the DELETED event carries a new resourceVersion.
    pub fn remove(&mut self, key: &ObjKey) -> Option<Arc<Value>> {
        let old = self
            .inner
            .objects
            .get_mut(&key.res)?
            .remove(&(key.namespace.clone(), key.name.clone()))?;
        self.index(key, Some(&old), None);
        let rv = self.next_rv();
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let last = Arc::new(last);
        self.record(Change {
            rv,
            kind: EventType::Deleted,
            key: key.clone(),
            object: last.clone(),
            previous: Some(old),
        });
        Some(last)
    }

    /// Drops every object of a resource (its CRD went away).
    pub fn remove_all(&mut self, res: &ResKey) -> usize {
        let keys: Vec<ObjKey> = self
            .inner
            .objects
            .get(res)
            .map(|b| {
                b.keys()
                    .map(|(ns, name)| ObjKey {
                        res: res.clone(),
                        namespace: ns.clone(),
                        name: name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        for k in &keys {
            self.remove(k);
        }
        keys.len()
    }

    /// Changes after `rv` (exclusive), or Err if history no longer covers `rv`.
    pub fn changes_since(&self, rv: u64) -> Result<Vec<Arc<Change>>, u64> {
        if rv < self.inner.compacted {
            return Err(self.inner.compacted);
        }
        Ok(self
            .inner
            .history
            .iter()
            .filter(|c| c.rv > rv)
            .cloned()
            .collect())
    }

    /// Subscribes while holding the lock, so no change falls between a snapshot
    /// taken through this `Txn` and the live stream.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjKey {
        ObjKey {
            res: ResKey::new("", "configmaps"),
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn versions_increase_and_history_compacts() {
        let store = Store::new(2);
        let mut t = store.lock();
        let a = t.put(&key("a"), json!({"metadata": {"name": "a"}}));
        let b = t.put(&key("b"), json!({"metadata": {"name": "b"}}));
        let rv_a: u64 = meta_str(&a, "resourceVersion").unwrap().parse().unwrap();
        let rv_b: u64 = meta_str(&b, "resourceVersion").unwrap().parse().unwrap();
        assert!(rv_b > rv_a);
        assert_eq!(t.changes_since(rv_a).unwrap().len(), 1);
        t.remove(&key("a"));
        // history holds 2 changes: b's put and a's removal; a's put is compacted.
        assert!(t.changes_since(rv_a - 1).is_err());
        assert_eq!(t.changes_since(rv_a).unwrap().len(), 2);
        assert_eq!(
            t.list(&ResKey::new("", "configmaps"), Some("default"))
                .len(),
            1
        );
    }

    #[test]
    fn owner_index_follows_updates() {
        let store = Store::new(10);
        let mut t = store.lock();
        t.put(
            &key("child"),
            json!({"metadata": {"name": "child", "ownerReferences": [{"uid": "u1"}]}}),
        );
        assert_eq!(t.dependents_of("u1"), vec![key("child")]);
        t.put(&key("child"), json!({"metadata": {"name": "child"}}));
        assert!(t.dependents_of("u1").is_empty());
    }
}
