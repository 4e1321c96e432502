//! The contents of PersistentVolumes: what simulated programs wrote on them.
//!
//! Each volume, named by its PV, holds a small file tree (path -> bytes; paths are
//! relative to the volume's root, `/`-separated, without a leading `/`). Data lives
//! as long as the twin, independent of pods: a pod that restarts or is rescheduled
//! and mounts the same claim finds what it wrote. Velero's file-system backup copies
//! volumes with [`VolumeData::snapshot`] and [`VolumeData::restore`]; a PV deleted
//! under reclaim policy Delete loses its data ([`VolumeData::delete_volume`]).
//!
//! A PV deleted and recreated under the same name is a new, empty volume: whoever
//! resolves a pod's volume ([`pod_volume_pv`]) attaches the PV object's uid
//! ([`VolumeData::attach`]), and data written for another uid is dropped then.
//!
//! Programs that keep a parsed form of a file (a database's tables) can cache it
//! beside the bytes ([`Files::decoded`]); the cache is dropped when the file changes.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::ctx::{obj, Ctx};

type Decoded = Arc<dyn Any + Send + Sync>;

/// The files of one volume, as a program that mounted it sees them (inside
/// [`VolumeData::update`], which holds the volume's lock).
#[derive(Default)]
pub struct Files {
    /// The uid of the PV object the data belongs to (None: not yet attached).
    uid: Option<String>,
    files: BTreeMap<String, Vec<u8>>,
    decoded: HashMap<String, Decoded>,
}

impl Files {
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    pub fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Writes (creates or replaces) a file.
    pub fn put(&mut self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.decoded.remove(path);
        self.files.insert(path.to_string(), bytes.into());
    }

    /// Writes a file together with its parsed form (what [`Files::decoded`] returns
    /// for it until it changes again).
    pub fn put_decoded<T: Send + Sync + 'static>(
        &mut self,
        path: &str,
        bytes: impl Into<Vec<u8>>,
        decoded: Arc<T>,
    ) {
        self.files.insert(path.to_string(), bytes.into());
        self.decoded.insert(path.to_string(), decoded);
    }

    /// Removes a file; false when there was none.
    pub fn remove(&mut self, path: &str) -> bool {
        self.decoded.remove(path);
        self.files.remove(path).is_some()
    }

    /// Every path, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    /// Paths under a directory (`dir` without a trailing `/`; "" for all), sorted.
    pub fn paths_under(&self, dir: &str) -> Vec<String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.files
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes used by all files.
    pub fn used_bytes(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }

    /// The parsed form of a file: `decode` runs on the bytes the first time (and
    /// after every change of the file); later calls get the cached value. None when
    /// the file does not exist.
    pub fn decoded<T: Send + Sync + 'static>(
        &mut self,
        path: &str,
        decode: impl FnOnce(&[u8]) -> T,
    ) -> Option<Arc<T>> {
        let bytes = self.files.get(path)?;
        if let Some(d) = self.decoded.get(path) {
            if let Ok(t) = d.clone().downcast::<T>() {
                return Some(t);
            }
        }
        let t = Arc::new(decode(bytes));
        self.decoded.insert(path.to_string(), t.clone());
        Some(t)
    }

    fn clear(&mut self) {
        self.files.clear();
        self.decoded.clear();
    }
}

/// The data of every volume, by PV name. Thread-safe; each volume has its own lock.
#[derive(Default)]
pub struct VolumeData {
    volumes: RwLock<HashMap<String, Arc<Mutex<Files>>>>,
}

impl VolumeData {
    fn volume(&self, pv: &str) -> Option<Arc<Mutex<Files>>> {
        self.volumes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(pv)
            .cloned()
    }

    fn volume_or_create(&self, pv: &str) -> Arc<Mutex<Files>> {
        if let Some(v) = self.volume(pv) {
            return v;
        }
        self.volumes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pv.to_string())
            .or_default()
            .clone()
    }

    /// Runs `f` on the volume's files under its lock (the volume is created empty
    /// when it has no data yet): a read-modify-write that no other writer interleaves.
    pub fn update<R>(&self, pv: &str, f: impl FnOnce(&mut Files) -> R) -> R {
        let v = self.volume_or_create(pv);
        let mut files = v.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut files)
    }

    /// Runs `f` on the volume's files under its lock, when the volume has data.
    pub fn inspect<R>(&self, pv: &str, f: impl FnOnce(&mut Files) -> R) -> Option<R> {
        let v = self.volume(pv)?;
        let mut files = v.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&mut files))
    }

    pub fn read(&self, pv: &str, path: &str) -> Option<Vec<u8>> {
        self.inspect(pv, |f| f.get(path).map(<[u8]>::to_vec))
            .flatten()
    }

    pub fn write(&self, pv: &str, path: &str, bytes: impl Into<Vec<u8>>) {
        let bytes = bytes.into();
        self.update(pv, |f| f.put(path, bytes));
    }

    /// Removes one file; false when there was none.
    pub fn remove(&self, pv: &str, path: &str) -> bool {
        self.inspect(pv, |f| f.remove(path)).unwrap_or(false)
    }

    /// The volume's paths, sorted (empty for an unknown volume).
    pub fn list(&self, pv: &str) -> Vec<String> {
        self.inspect(pv, |f| f.paths()).unwrap_or_default()
    }

    /// A copy of every file of the volume (what a file-system backup takes).
    pub fn snapshot(&self, pv: &str) -> BTreeMap<String, Vec<u8>> {
        self.inspect(pv, |f| f.files.clone()).unwrap_or_default()
    }

    /// Replaces the volume's contents with `files` (a file-system restore). The
    /// restored data belongs to whichever PV object of that name attaches next.
    pub fn restore(&self, pv: &str, files: BTreeMap<String, Vec<u8>>) {
        self.update(pv, |f| {
            f.clear();
            f.files = files;
            f.uid = None;
        });
    }

    /// Forgets the volume and its data (the PV was deleted).
    pub fn delete_volume(&self, pv: &str) -> bool {
        self.volumes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pv)
            .is_some()
    }

    /// True when the volume holds at least one file.
    pub fn has_data(&self, pv: &str) -> bool {
        self.inspect(pv, |f| !f.is_empty()).unwrap_or(false)
    }

    /// Names of the volumes that hold data (or were written once), sorted.
    pub fn volumes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .volumes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Bytes used on the volume.
    pub fn used_bytes(&self, pv: &str) -> usize {
        self.inspect(pv, |f| f.used_bytes()).unwrap_or(0)
    }

    /// Records that the volume named `pv` is the PV object with `uid`. Data written
    /// while another PV object of the same name was attached is dropped (that PV was
    /// deleted and this one is new); data never attached (restored) is adopted.
    /// Returns false when data was dropped.
    pub fn attach(&self, pv: &str, uid: &str) -> bool {
        self.update(pv, |f| match f.uid.as_deref() {
            Some(u) if u != uid => {
                f.clear();
                f.uid = Some(uid.to_string());
                false
            }
            Some(_) => true,
            None => {
                f.uid = Some(uid.to_string());
                true
            }
        })
    }
}

/// The PV behind a pod's volume: pod volume `volume_name` -> its
/// `persistentVolumeClaim.claimName` (or the StatefulSet-style ephemeral claim
/// `<pod>-<volume>` of an `ephemeral` volume) -> the claim's `spec.volumeName` while
/// the claim is Bound -> that PV, when it exists. Attaches the PV's uid to its data
/// ([`VolumeData::attach`]). None when any link is missing.
pub fn pod_volume_pv(ctx: &Ctx, pod: &Value, volume_name: &str) -> Option<String> {
    let volume = pod
        .pointer("/spec/volumes")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == volume_name)?;
    let claim = match volume
        .pointer("/persistentVolumeClaim/claimName")
        .and_then(Value::as_str)
    {
        Some(c) => c.to_string(),
        None if volume.get("ephemeral").is_some() => format!("{}-{volume_name}", obj::name(pod)),
        None => return None,
    };
    let pvc = ctx.client.get(
        "",
        "persistentvolumeclaims",
        Some(obj::namespace(pod)),
        &claim,
    )?;
    if obj::str_at(&pvc, "/status/phase") != Some("Bound") {
        return None;
    }
    let pv_name = obj::str_at(&pvc, "/spec/volumeName").filter(|n| !n.is_empty())?;
    let pv = ctx.client.get("", "persistentvolumes", None, pv_name)?;
    let uid = obj::uid(&pv);
    if !uid.is_empty() {
        ctx.voldata.attach(pv_name, uid);
    }
    Some(pv_name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_kept_per_volume() {
        let d = VolumeData::default();
        assert_eq!(d.read("pv-a", "x"), None);
        assert!(d.list("pv-a").is_empty());
        d.write("pv-a", "dir/x", b"1".to_vec());
        d.write("pv-a", "dir/y", "2");
        d.write("pv-b", "x", "other");
        assert_eq!(d.read("pv-a", "dir/x").as_deref(), Some(&b"1"[..]));
        assert_eq!(d.list("pv-a"), vec!["dir/x", "dir/y"]);
        assert_eq!(d.read("pv-b", "x").as_deref(), Some(&b"other"[..]));
        assert_eq!(d.used_bytes("pv-a"), 2);
        assert!(d.remove("pv-a", "dir/y"));
        assert!(!d.remove("pv-a", "dir/y"));
        assert_eq!(d.volumes(), vec!["pv-a", "pv-b"]);
        assert_eq!(d.update("pv-a", |f| f.paths_under("dir")), vec!["dir/x"]);
    }

    #[test]
    fn snapshot_restore_and_delete() {
        let d = VolumeData::default();
        d.write("pv-a", "a", "1");
        d.write("pv-a", "b", "2");
        let snap = d.snapshot("pv-a");
        d.write("pv-a", "a", "changed");
        d.write("pv-a", "c", "new");
        d.restore("pv-a", snap.clone());
        assert_eq!(d.snapshot("pv-a"), snap);
        // A restore into another volume (Velero restores into a new PV).
        d.restore("pv-new", snap.clone());
        assert_eq!(d.read("pv-new", "b").as_deref(), Some(&b"2"[..]));
        assert!(d.delete_volume("pv-a"));
        assert!(!d.has_data("pv-a"));
        assert!(d.snapshot("pv-a").is_empty());
        assert!(!d.delete_volume("pv-a"));
    }

    #[test]
    fn a_recreated_pv_is_a_new_volume() {
        let d = VolumeData::default();
        assert!(d.attach("pv-a", "uid-1"));
        d.write("pv-a", "f", "old");
        assert!(d.attach("pv-a", "uid-1"));
        assert!(d.has_data("pv-a"));
        assert!(!d.attach("pv-a", "uid-2"));
        assert!(!d.has_data("pv-a"));
        // Restored data is adopted by the PV that attaches next.
        d.restore(
            "pv-a",
            BTreeMap::from([("f".to_string(), b"restored".to_vec())]),
        );
        assert!(d.attach("pv-a", "uid-3"));
        assert_eq!(d.read("pv-a", "f").as_deref(), Some(&b"restored"[..]));
    }

    #[test]
    fn decoded_forms_follow_the_bytes() {
        let d = VolumeData::default();
        d.write("pv", "n", "41");
        let parse = |b: &[u8]| String::from_utf8_lossy(b).parse::<i64>().unwrap_or(0);
        let mut calls = 0;
        let v = d.update("pv", |f| {
            f.decoded("n", |b| {
                calls += 1;
                parse(b)
            })
        });
        assert_eq!(v.as_deref(), Some(&41));
        let v = d.update("pv", |f| {
            f.decoded("n", |b| {
                calls += 1;
                parse(b)
            })
        });
        assert_eq!(v.as_deref(), Some(&41));
        assert_eq!(calls, 1);
        d.write("pv", "n", "42");
        assert_eq!(
            d.update("pv", |f| f.decoded("n", parse)).as_deref(),
            Some(&42)
        );
        d.update("pv", |f| f.put_decoded("n", "43", Arc::new(43i64)));
        assert_eq!(
            d.update("pv", |f| f.decoded("n", |_| -1i64)).as_deref(),
            Some(&43)
        );
        assert_eq!(d.update("pv", |f| f.decoded("missing", parse)), None);
    }

    #[test]
    fn concurrent_writers_do_not_lose_updates() {
        let d = Arc::new(VolumeData::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        d.update("pv", |f| {
                            let n: u64 = f
                                .get("n")
                                .map(|b| String::from_utf8_lossy(b).parse().unwrap_or(0))
                                .unwrap_or(0);
                            f.put("n", (n + 1).to_string());
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(d.read("pv", "n").as_deref(), Some(&b"800"[..]));
    }
}
