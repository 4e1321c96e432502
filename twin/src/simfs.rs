//! Simulated containers' files: a small in-memory filesystem per container, and the
//! shell commands of [`crate::sim`] that use it — `tar` (what `kubectl cp` runs, both
//! ways), `ls`, `cat FILE`, `test`/`[`, `mkdir`, `rm`.
//!
//! Contract:
//! - One [`Fs`] per (namespace, pod, container), tied to the pod's UID: a new pod
//!   with the same name starts empty. It is the container's writable layer (volumes
//!   are not modelled): it is lost when the pod is deleted ([`FsStore::forget_pod`],
//!   [`FsStore::retain_pods`]) and when the container restarts
//!   ([`FsStore::reset_container`]).
//! - A new filesystem has the directories every image has ([`BASE_DIRS`]), empty;
//!   the working directory is `/`. At most [`CAP`] bytes of file data per container:
//!   past that a write fails with "No space left on device".
//! - Commands answer as GNU tar 1.34 and coreutils do: their messages on stderr and
//!   their exit codes (tar: 2 when anything failed, after doing what it could; 64 for
//!   a bad option). `tar` takes the archive on stdin/stdout (`f -`) or in the
//!   filesystem, bundled (`xmf`, `-xmf`) or separate options, `-C DIR`, `-v`, and
//!   ignores the ownership/permission/time options kubectl passes (`m`,
//!   `--no-same-owner`, `--no-same-permissions`); compression is refused. Member
//!   names lose their leading `/` ("Removing leading `/' from member names"); names
//!   with `..` are skipped; links and device files are not extracted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::Mutex;

use crate::sim::ExecOutput;

/// The directories of a new container's filesystem.
pub const BASE_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/dev",
    "/etc",
    "/home",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/local",
    "/usr/local/bin",
    "/var",
    "/var/log",
    "/var/tmp",
];
/// The most file data a container holds.
pub const CAP: usize = 64 << 20;

/// Why a file operation failed; the messages are strerror's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("No such file or directory")]
    NotFound,
    #[error("Not a directory")]
    NotADirectory,
    #[error("Is a directory")]
    IsADirectory,
    #[error("File exists")]
    Exists,
    #[error("No space left on device")]
    NoSpace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
        mtime: u64,
    },
    File {
        data: Vec<u8>,
        mode: u32,
        mtime: u64,
    },
}

impl Node {
    fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. })
    }
}

fn now() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

/// `path` made absolute against `cwd` and normalized (`.`, `..`, repeated and
/// trailing slashes); `..` stops at the root.
pub fn absolute(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{cwd}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// One container's files, by absolute normalized path.
#[derive(Clone, Debug)]
pub struct Fs {
    uid: String,
    nodes: BTreeMap<String, Node>,
    used: usize,
}

impl Default for Fs {
    fn default() -> Self {
        Fs::new("")
    }
}

impl Fs {
    /// A fresh filesystem for the pod with `uid`: [`BASE_DIRS`] only.
    pub fn new(uid: &str) -> Fs {
        let mtime = now();
        let nodes = BASE_DIRS
            .iter()
            .map(|d| (d.to_string(), Node::Dir { mode: 0o755, mtime }))
            .collect();
        Fs {
            uid: uid.to_string(),
            nodes,
            used: 0,
        }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn is_dir(&self, path: &str) -> bool {
        self.get(path).is_some_and(Node::is_dir)
    }

    /// A file's bytes.
    pub fn read(&self, path: &str) -> Result<&[u8], FsError> {
        match self.get(path) {
            Some(Node::File { data, .. }) => Ok(data),
            Some(Node::Dir { .. }) => Err(FsError::IsADirectory),
            None => Err(FsError::NotFound),
        }
    }

    /// Whether `path`'s parent is a directory (else why not).
    fn parent_ok(&self, path: &str) -> Result<(), FsError> {
        match self.get(parent(path)) {
            Some(Node::Dir { .. }) => Ok(()),
            Some(Node::File { .. }) => Err(FsError::NotADirectory),
            None => Err(FsError::NotFound),
        }
    }

    /// Creates a directory whose parent exists.
    pub fn mkdir(&mut self, path: &str, mode: u32) -> Result<(), FsError> {
        if self.get(path).is_some() {
            return Err(FsError::Exists);
        }
        self.parent_ok(path)?;
        self.nodes
            .insert(path.to_string(), Node::Dir { mode, mtime: now() });
        Ok(())
    }

    /// Creates `path` and its missing parents (`mkdir -p`).
    pub fn mkdir_all(&mut self, path: &str, mode: u32) -> Result<(), FsError> {
        match self.get(path) {
            Some(Node::Dir { .. }) => return Ok(()),
            Some(Node::File { .. }) => return Err(FsError::NotADirectory),
            None => {}
        }
        if path != "/" {
            self.mkdir_all(parent(path), 0o755)?;
        }
        self.mkdir(path, mode)
    }

    /// Writes (creates or replaces) a file whose parent directory exists.
    pub fn write(&mut self, path: &str, data: Vec<u8>, mode: u32) -> Result<(), FsError> {
        let old = match self.get(path) {
            Some(Node::Dir { .. }) => return Err(FsError::IsADirectory),
            Some(Node::File { data, .. }) => data.len(),
            None => 0,
        };
        self.parent_ok(path)?;
        let used = self.used - old + data.len();
        if used > CAP {
            return Err(FsError::NoSpace);
        }
        self.used = used;
        self.nodes.insert(
            path.to_string(),
            Node::File {
                data,
                mode,
                mtime: now(),
            },
        );
        Ok(())
    }

    /// Removes a file, or a directory with everything under it.
    pub fn remove(&mut self, path: &str) -> Result<(), FsError> {
        if self.nodes.remove(path).is_none() {
            return Err(FsError::NotFound);
        }
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        let under: Vec<String> = self.descendants(path).into_iter().collect();
        for p in under {
            if p.starts_with(&prefix) {
                self.nodes.remove(&p);
            }
        }
        self.used = self
            .nodes
            .values()
            .map(|n| match n {
                Node::File { data, .. } => data.len(),
                Node::Dir { .. } => 0,
            })
            .sum();
        Ok(())
    }

    /// Every path under directory `dir` (not itself), sorted.
    pub fn descendants(&self, dir: &str) -> Vec<String> {
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.as_str() != dir)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The names directly in directory `dir`, sorted.
    pub fn children(&self, dir: &str) -> Vec<String> {
        let skip = if dir == "/" { 1 } else { dir.len() + 1 };
        self.descendants(dir)
            .into_iter()
            .filter(|p| !p[skip..].contains('/'))
            .map(|p| p[skip..].to_string())
            .collect()
    }
}

type Key = (String, String, String);

/// Every container's filesystem.
#[derive(Debug, Default)]
pub struct FsStore(Mutex<HashMap<Key, Fs>>);

impl FsStore {
    /// Runs `f` on the filesystem of `container` in pod `namespace/pod` (UID
    /// `uid`), which starts fresh when the UID changed.
    pub fn with<R>(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        container: &str,
        f: impl FnOnce(&mut Fs) -> R,
    ) -> R {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let fs = all
            .entry((
                namespace.to_string(),
                pod.to_string(),
                container.to_string(),
            ))
            .or_insert_with(|| Fs::new(uid));
        if fs.uid != uid {
            *fs = Fs::new(uid);
        }
        f(fs)
    }

    /// The pod is gone: its containers' files too.
    pub fn forget_pod(&self, namespace: &str, pod: &str) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|(ns, p, _), _| !(ns == namespace && p == pod));
    }

    /// Keeps only the files of pods whose UID is in `live`.
    pub fn retain_pods(&self, live: &HashSet<String>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, fs| live.contains(&fs.uid));
    }

    /// The container restarted: a new writable layer.
    pub fn reset_container(&self, namespace: &str, pod: &str, container: &str) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.remove(&(
            namespace.to_string(),
            pod.to_string(),
            container.to_string(),
        ));
    }
}

// ----- tar ------------------------------------------------------------------------

/// What a `tar` command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TarArgs {
    /// `c`, `x` or `t`.
    pub mode: Option<char>,
    /// `f`: `-` or a path (None: stdin/stdout, as busybox's default).
    pub archive: Option<String>,
    /// `-C`.
    pub dir: Option<String>,
    pub verbose: bool,
    pub members: Vec<String>,
}

impl TarArgs {
    /// Whether the archive is read from stdin (`x` or `t` from `-`).
    pub fn reads_stdin(&self) -> bool {
        matches!(self.mode, Some('x' | 't')) && self.archive.as_deref().is_none_or(|a| a == "-")
    }
}

/// A usage error and its exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage(pub String, pub i32);

const TRY_HELP: &str = "Try 'tar --help' or 'tar --usage' for more information.\n";

fn usage(msg: String) -> Usage {
    Usage(format!("tar: {msg}\n{TRY_HELP}"), 64)
}

/// Options that change nothing here (ownership, permissions, times, warnings).
const IGNORED_LONG: &[&str] = &[
    "no-same-owner",
    "no-same-permissions",
    "same-owner",
    "same-permissions",
    "preserve-permissions",
    "numeric-owner",
    "touch",
    "overwrite",
    "keep-old-files",
    "warning",
    "owner",
    "group",
    "mode",
    "mtime",
    "sort",
    "format",
];

/// Parses GNU tar's option forms: an old-style first word (`xmf -`), dashed
/// bundles (`-xmf -`, `-f-`), separate options and long options.
pub fn parse_tar_args(args: &[&str]) -> Result<TarArgs, Usage> {
    let mut t = TarArgs::default();
    let mut i = 0;
    let mut only_members = false;
    while i < args.len() {
        let a = args[i];
        i += 1;
        if only_members {
            t.members.push(a.to_string());
        } else if a == "--" {
            only_members = true;
        } else if i == 1 && !a.starts_with('-') {
            // Old style: each letter needing a value takes the next word, in order.
            for c in a.chars() {
                let mut next = || {
                    let v = args.get(i).map(|s| s.to_string());
                    i += 1;
                    v
                };
                letter(&mut t, c, &mut next)?;
            }
        } else if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let mut value = || match &inline {
                Some(v) => Some(v.clone()),
                None => {
                    let v = args.get(i).map(|s| s.to_string());
                    i += 1;
                    v
                }
            };
            match name {
                "create" => set_mode(&mut t, 'c')?,
                "extract" | "get" => set_mode(&mut t, 'x')?,
                "list" => set_mode(&mut t, 't')?,
                "file" => letter(&mut t, 'f', &mut value)?,
                "directory" => letter(&mut t, 'C', &mut value)?,
                "verbose" => t.verbose = true,
                n if IGNORED_LONG.contains(&n) => {}
                "gzip" | "bzip2" | "xz" | "zstd" | "auto-compress" => {
                    letter(&mut t, 'z', &mut value)?
                }
                n => return Err(usage(format!("unrecognized option '--{n}'"))),
            }
        } else if let Some(bundle) = a.strip_prefix('-').filter(|b| !b.is_empty()) {
            let chars: Vec<char> = bundle.chars().collect();
            for (k, &c) in chars.iter().enumerate() {
                if matches!(c, 'f' | 'C') {
                    // The rest of the bundle is the value (`-f-`), else the next word.
                    let rest: String = chars[k + 1..].iter().collect();
                    let mut value = || {
                        if !rest.is_empty() {
                            return Some(rest.clone());
                        }
                        let v = args.get(i).map(|s| s.to_string());
                        i += 1;
                        v
                    };
                    letter(&mut t, c, &mut value)?;
                    break;
                }
                letter(&mut t, c, &mut || None)?;
            }
        } else {
            t.members.push(a.to_string());
        }
    }
    if t.mode.is_none() {
        return Err(usage(
            "You must specify one of the '-Acdtrux', '--delete' or '--test-label' options".into(),
        ));
    }
    Ok(t)
}

fn set_mode(t: &mut TarArgs, m: char) -> Result<(), Usage> {
    match t.mode {
        Some(old) if old != m => Err(usage(
            "You may not specify more than one '-Acdtrux', '--delete' or  '--test-label' option"
                .into(),
        )),
        _ => {
            t.mode = Some(m);
            Ok(())
        }
    }
}

/// Applies one option letter; `value` gives the argument of `f` and `C`.
fn letter(
    t: &mut TarArgs,
    c: char,
    value: &mut dyn FnMut() -> Option<String>,
) -> Result<(), Usage> {
    match c {
        'c' | 'x' | 't' => set_mode(t, c)?,
        'f' | 'C' => {
            let v =
                value().ok_or_else(|| usage(format!("option requires an argument -- '{c}'")))?;
            if c == 'f' {
                t.archive = Some(v);
            } else {
                t.dir = Some(v);
            }
        }
        'v' => t.verbose = true,
        'm' | 'o' | 'p' | 'h' | 'P' | 'k' | 'U' => {}
        'z' | 'j' | 'J' | 'a' | 'Z' => {
            return Err(Usage(
                "tar: compression is not available in this simulated container\n".into(),
                2,
            ))
        }
        other => return Err(usage(format!("invalid option -- '{other}'"))),
    }
    Ok(())
}

const FAILED: &str = "tar: Exiting with failure status due to previous errors\n";
const FATAL: &str = "tar: Error is not recoverable: exiting now\n";

/// Runs `tar ARGS` in `fs` with `stdin` (see the module docs).
pub fn tar(fs: &mut Fs, args: &[&str], stdin: Option<&[u8]>) -> ExecOutput {
    let t = match parse_tar_args(args) {
        Ok(t) => t,
        Err(Usage(msg, code)) => return ExecOutput::fail(code, msg),
    };
    match t.mode {
        Some('c') => create(fs, &t),
        _ => extract(fs, &t, stdin.unwrap_or_default()),
    }
}

fn create(fs: &mut Fs, t: &TarArgs) -> ExecOutput {
    if t.members.is_empty() {
        return ExecOutput::fail(
            2,
            format!("tar: Cowardly refusing to create an empty archive\n{TRY_HELP}"),
        );
    }
    let base = absolute("/", t.dir.as_deref().unwrap_or("/"));
    if !fs.is_dir(&base) {
        let dir = t.dir.as_deref().unwrap_or("/");
        return ExecOutput::fail(
            2,
            format!("tar: {dir}: Cannot open: No such file or directory\n{FATAL}"),
        );
    }
    let mut out = ExecOutput::default();
    let mut failed = false;
    let mut warned = false;
    let mut builder = tar::Builder::new(Vec::new());
    for m in &t.members {
        let name = m.trim_start_matches('/').trim_end_matches('/');
        if m.starts_with('/') && !warned {
            warned = true;
            out.stderr
                .extend_from_slice(b"tar: Removing leading `/' from member names\n");
        }
        let path = absolute(&base, m);
        let Some(node) = fs.get(&path) else {
            failed = true;
            out.stderr.extend_from_slice(
                format!("tar: {m}: Cannot stat: No such file or directory\n").as_bytes(),
            );
            continue;
        };
        let mut entries = vec![(name.to_string(), node.clone())];
        if node.is_dir() {
            let skip = if path == "/" { 1 } else { path.len() + 1 };
            for p in fs.descendants(&path) {
                let rel = &p[skip..];
                let n = if name.is_empty() {
                    rel.to_string()
                } else {
                    format!("{name}/{rel}")
                };
                if let Some(node) = fs.get(&p) {
                    entries.push((n, node.clone()));
                }
            }
        }
        for (n, node) in entries {
            if n.is_empty() {
                continue;
            }
            if let Err(e) = append(&mut builder, &n, &node) {
                failed = true;
                out.stderr
                    .extend_from_slice(format!("tar: {n}: {e}\n").as_bytes());
            }
            if t.verbose {
                // The listing goes to stderr when the archive is stdout.
                out.stderr.extend_from_slice(format!("{n}\n").as_bytes());
            }
        }
    }
    let archive = builder.into_inner().unwrap_or_default();
    match t.archive.as_deref() {
        None | Some("-") => out.stdout = archive,
        Some(file) => {
            if let Err(e) = fs.write(&absolute("/", file), archive, 0o644) {
                out.stderr.extend_from_slice(
                    format!("tar: {file}: Cannot open: {e}\n{FATAL}").as_bytes(),
                );
                out.exit_code = 2;
                return out;
            }
        }
    }
    if failed {
        out.stderr.extend_from_slice(FAILED.as_bytes());
        out.exit_code = 2;
    }
    out
}

fn append(builder: &mut tar::Builder<Vec<u8>>, name: &str, node: &Node) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    match node {
        Node::Dir { mode, mtime } => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(*mode);
            h.set_mtime(*mtime);
            h.set_size(0);
            builder.append_data(&mut h, format!("{name}/"), std::io::empty())
        }
        Node::File { data, mode, mtime } => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(*mode);
            h.set_mtime(*mtime);
            h.set_size(data.len() as u64);
            builder.append_data(&mut h, name, &data[..])
        }
    }
}

fn extract(fs: &mut Fs, t: &TarArgs, stdin: &[u8]) -> ExecOutput {
    let listing = t.mode == Some('t');
    let owned;
    let data: &[u8] = match t.archive.as_deref() {
        None | Some("-") => stdin,
        Some(file) => match fs.read(&absolute("/", file)) {
            Ok(d) => {
                owned = d.to_vec();
                &owned
            }
            Err(e) => {
                return ExecOutput::fail(2, format!("tar: {file}: Cannot open: {e}\n{FATAL}"))
            }
        },
    };
    let not_tar = || {
        ExecOutput::fail(
            2,
            format!("tar: This does not look like a tar archive\n{FAILED}"),
        )
    };
    // GNU tar reads the first block before it changes directory.
    if data.len() < 512 {
        return not_tar();
    }
    let base = absolute("/", t.dir.as_deref().unwrap_or("/"));
    if !listing && !fs.is_dir(&base) {
        let dir = t.dir.as_deref().unwrap_or("/");
        return ExecOutput::fail(
            2,
            format!("tar: {dir}: Cannot open: No such file or directory\n{FATAL}"),
        );
    }
    let mut archive = tar::Archive::new(data);
    let Ok(entries) = archive.entries() else {
        return not_tar();
    };
    let mut out = ExecOutput::default();
    let mut failed = false;
    let mut warned = false;
    let mut seen_any = false;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(_) if !seen_any => return not_tar(),
            Err(_) => {
                out.stderr.extend_from_slice(
                    format!("tar: Unexpected EOF in archive\n{FATAL}").as_bytes(),
                );
                out.exit_code = 2;
                return out;
            }
        };
        seen_any = true;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = raw.trim_start_matches('/').to_string();
        if name.len() != raw.len() && !warned {
            warned = true;
            out.stderr
                .extend_from_slice(b"tar: Removing leading `/' from member names\n");
        }
        let wanted = t.members.is_empty()
            || t.members.iter().any(|m| {
                let m = m.trim_start_matches('/').trim_end_matches('/');
                let n = name.trim_end_matches('/');
                n == m || n.starts_with(&format!("{m}/"))
            });
        if !wanted {
            continue;
        }
        if listing || t.verbose {
            out.stdout.extend_from_slice(format!("{name}\n").as_bytes());
        }
        if listing {
            continue;
        }
        if name.split('/').any(|c| c == "..") {
            failed = true;
            out.stderr
                .extend_from_slice(format!("tar: {name}: Member name contains '..'\n").as_bytes());
            continue;
        }
        let path = absolute(&base, &name);
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let kind = entry.header().entry_type();
        let result = if kind.is_dir() {
            fs.mkdir_all(&path, mode)
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let mut bytes = Vec::new();
            if entry.read_to_end(&mut bytes).is_err() {
                out.stderr.extend_from_slice(
                    format!("tar: Unexpected EOF in archive\n{FATAL}").as_bytes(),
                );
                out.exit_code = 2;
                return out;
            }
            fs.mkdir_all(parent(&path), 0o755)
                .and_then(|()| fs.write(&path, bytes, mode))
        } else {
            failed = true;
            out.stderr.extend_from_slice(
                format!("tar: {name}: Cannot create: Operation not supported\n").as_bytes(),
            );
            continue;
        };
        if let Err(e) = result {
            failed = true;
            out.stderr
                .extend_from_slice(format!("tar: {name}: Cannot open: {e}\n").as_bytes());
        }
    }
    if !seen_any {
        // Only zero blocks: an empty archive, which GNU tar accepts.
        return out;
    }
    if failed {
        out.stderr.extend_from_slice(FAILED.as_bytes());
        out.exit_code = 2;
    }
    out
}

// ----- ls, cat, test, mkdir, rm -----------------------------------------------------

fn mode_string(node: &Node) -> String {
    let (kind, mode) = match node {
        Node::Dir { mode, .. } => ('d', *mode),
        Node::File { mode, .. } => ('-', *mode),
    };
    let mut s = String::from(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn long_line(node: &Node, name: &str) -> String {
    let (size, mtime) = match node {
        Node::Dir { mtime, .. } => (4096, *mtime),
        Node::File { data, mtime, .. } => (data.len(), *mtime),
    };
    let when = chrono::DateTime::from_timestamp(mtime as i64, 0)
        .map(|t| t.format("%b %e %H:%M").to_string())
        .unwrap_or_default();
    format!(
        "{} 1 root root {size:>8} {when} {name}\n",
        mode_string(node)
    )
}

/// `ls [-l] [-a] [-1] [-d] [PATH...]`; one name a line, as when not on a terminal.
pub fn ls(fs: &Fs, args: &[&str]) -> ExecOutput {
    let (mut long, mut all, mut dir_itself) = (false, false, false);
    let mut paths = Vec::new();
    for a in args {
        match a.strip_prefix('-').filter(|f| !f.is_empty()) {
            Some(flags) => {
                for c in flags.chars() {
                    match c {
                        'l' => long = true,
                        'a' | 'A' => all = true,
                        'd' => dir_itself = true,
                        '1' | 'h' | 'F' | 'p' | 'n' => {}
                        other => {
                            return ExecOutput::fail(
                                2,
                                format!("ls: invalid option -- '{other}'\nTry 'ls --help' for more information.\n"),
                            )
                        }
                    }
                }
            }
            None => paths.push(a.to_string()),
        }
    }
    if paths.is_empty() {
        paths.push(".".into());
    }
    let mut out = ExecOutput::default();
    let many = paths.len() > 1;
    for (k, p) in paths.iter().enumerate() {
        let abs = absolute("/", p);
        let Some(node) = fs.get(&abs) else {
            out.stderr.extend_from_slice(
                format!("ls: cannot access '{p}': No such file or directory\n").as_bytes(),
            );
            out.exit_code = 2;
            continue;
        };
        if !node.is_dir() || dir_itself {
            let line = if long {
                long_line(node, p)
            } else {
                format!("{p}\n")
            };
            out.stdout.extend_from_slice(line.as_bytes());
            continue;
        }
        if many {
            if k > 0 {
                out.stdout.push(b'\n');
            }
            out.stdout.extend_from_slice(format!("{p}:\n").as_bytes());
        }
        let names = fs.children(&abs);
        if long {
            out.stdout
                .extend_from_slice(format!("total {}\n", names.len() * 4).as_bytes());
        }
        for n in names {
            if n.starts_with('.') && !all {
                continue;
            }
            let line = match fs.get(&absolute(&abs, &n)) {
                Some(child) if long => long_line(child, &n),
                _ => format!("{n}\n"),
            };
            out.stdout.extend_from_slice(line.as_bytes());
        }
    }
    out
}

/// `cat FILE...` (`-` is stdin).
pub fn cat(fs: &Fs, files: &[&str], stdin: Option<&[u8]>) -> ExecOutput {
    let mut out = ExecOutput::default();
    for f in files {
        if *f == "-" {
            out.stdout.extend_from_slice(stdin.unwrap_or_default());
            continue;
        }
        match fs.read(&absolute("/", f)) {
            Ok(data) => out.stdout.extend_from_slice(data),
            Err(e) => {
                out.stderr
                    .extend_from_slice(format!("cat: {f}: {e}\n").as_bytes());
                out.exit_code = 1;
            }
        }
    }
    out
}

/// `test EXPR` / `[ EXPR ]`: `!`, file tests (-e -f -d -s -r -w -x), string tests
/// (-z -n = !=, one word) and integer comparisons. Exit 0 true, 1 false, 2 error.
pub fn test(fs: &Fs, args: &[&str], bracket: bool) -> ExecOutput {
    let args = if bracket {
        match args.split_last() {
            Some((&"]", rest)) => rest,
            _ => return ExecOutput::fail(2, "sh: [: missing ]\n"),
        }
    } else {
        args
    };
    let (negate, args) = match args.split_first() {
        Some((&"!", rest)) => (true, rest),
        _ => (false, args),
    };
    let node = |p: &str| fs.get(&absolute("/", p));
    let int = |s: &str| s.trim().parse::<i64>().ok();
    let result = match args {
        [] => Some(false),
        [word] => Some(!word.is_empty()),
        ["-e" | "-r" | "-w", p] => Some(node(p).is_some()),
        ["-f", p] => Some(matches!(node(p), Some(Node::File { .. }))),
        ["-d", p] => Some(matches!(node(p), Some(Node::Dir { .. }))),
        ["-s", p] => Some(matches!(node(p), Some(Node::File { data, .. }) if !data.is_empty())),
        ["-x", p] => Some(match node(p) {
            Some(Node::File { mode, .. }) => mode & 0o111 != 0,
            Some(Node::Dir { .. }) => true,
            None => false,
        }),
        ["-z", s] => Some(s.is_empty()),
        ["-n", s] => Some(!s.is_empty()),
        [a, "=" | "==", b] => Some(a == b),
        [a, "!=", b] => Some(a != b),
        [a, op @ ("-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge"), b] => match (int(a), int(b)) {
            (Some(x), Some(y)) => Some(match *op {
                "-eq" => x == y,
                "-ne" => x != y,
                "-lt" => x < y,
                "-le" => x <= y,
                "-gt" => x > y,
                _ => x >= y,
            }),
            _ => None,
        },
        _ => None,
    };
    match result {
        Some(r) if r != negate => ExecOutput::default(),
        Some(_) => ExecOutput::fail(1, ""),
        None => ExecOutput::fail(2, "sh: test: syntax error\n"),
    }
}

/// `mkdir [-p] DIR...`.
pub fn mkdir(fs: &mut Fs, args: &[&str]) -> ExecOutput {
    let parents = args.iter().any(|a| *a == "-p" || *a == "--parents");
    let mut out = ExecOutput::default();
    for d in args.iter().filter(|a| !a.starts_with('-')) {
        let path = absolute("/", d);
        let r = if parents {
            fs.mkdir_all(&path, 0o755)
        } else {
            fs.mkdir(&path, 0o755)
        };
        if let Err(e) = r {
            out.stderr.extend_from_slice(
                format!("mkdir: cannot create directory '{d}': {e}\n").as_bytes(),
            );
            out.exit_code = 1;
        }
    }
    out
}

/// `rm [-r] [-f] PATH...`.
pub fn rm(fs: &mut Fs, args: &[&str]) -> ExecOutput {
    let flags: String = args
        .iter()
        .filter(|a| a.starts_with('-') && a.len() > 1)
        .flat_map(|a| a.chars().skip(1))
        .collect();
    let recursive = flags.contains('r') || flags.contains('R');
    let force = flags.contains('f');
    let mut out = ExecOutput::default();
    for p in args.iter().filter(|a| !a.starts_with('-') || a.len() == 1) {
        let path = absolute("/", p);
        let err = match fs.get(&path) {
            None if force => None,
            None => Some(FsError::NotFound),
            Some(Node::Dir { .. }) if !recursive => Some(FsError::IsADirectory),
            Some(_) => fs.remove(&path).err(),
        };
        if let Some(e) = err {
            out.stderr
                .extend_from_slice(format!("rm: cannot remove '{p}': {e}\n").as_bytes());
            out.exit_code = 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(absolute("/", "tmp//a/./b/"), "/tmp/a/b");
        assert_eq!(absolute("/tmp", "../../etc"), "/etc");
        assert_eq!(absolute("/", "/"), "/");
        assert_eq!(parent("/tmp/a"), "/tmp");
        assert_eq!(parent("/tmp"), "/");
    }

    #[test]
    fn tar_options_in_every_form_kubectl_and_people_use() {
        let t = parse_tar_args(&argv("-xmf - -C /tmp")).unwrap();
        assert_eq!(
            (t.mode, t.archive.as_deref(), t.dir.as_deref()),
            (Some('x'), Some("-"), Some("/tmp"))
        );
        assert!(t.reads_stdin());
        let t = parse_tar_args(&argv("xmf - -C /tmp")).unwrap();
        assert_eq!((t.mode, t.dir.as_deref()), (Some('x'), Some("/tmp")));
        let t = parse_tar_args(&argv(
            "--no-same-permissions --no-same-owner -xmf - -C /data",
        ))
        .unwrap();
        assert_eq!(t.dir.as_deref(), Some("/data"));
        let t = parse_tar_args(&argv("cf - /tmp/a /tmp/b")).unwrap();
        assert_eq!(t.mode, Some('c'));
        assert_eq!(t.members, vec!["/tmp/a", "/tmp/b"]);
        assert!(!t.reads_stdin());
        let t = parse_tar_args(&argv("-c -f- --directory=/tmp x")).unwrap();
        assert_eq!(
            (t.archive.as_deref(), t.dir.as_deref()),
            (Some("-"), Some("/tmp"))
        );
        let t = parse_tar_args(&argv("cfC out.tar /tmp x")).unwrap();
        assert_eq!(
            (t.archive.as_deref(), t.dir.as_deref()),
            (Some("out.tar"), Some("/tmp"))
        );
        assert_eq!(t.members, vec!["x"]);
        assert_eq!(parse_tar_args(&argv("qf -")).unwrap_err().1, 64);
        assert_eq!(parse_tar_args(&argv("-f -")).unwrap_err().1, 64);
        assert_eq!(parse_tar_args(&argv("czf - /tmp")).unwrap_err().1, 2);
        assert!(parse_tar_args(&argv("cxf -")).is_err());
    }

    #[test]
    fn tar_round_trip_keeps_bytes_modes_and_directories() {
        let mut src = Fs::new("a");
        let binary: Vec<u8> = (0..100 * 1024).map(|i| (i * 7 % 256) as u8).collect();
        src.mkdir_all("/tmp/d/sub", 0o750).unwrap();
        src.write("/tmp/d/blob.bin", binary.clone(), 0o600).unwrap();
        src.write("/tmp/d/sub/note.txt", b"hello\n".to_vec(), 0o644)
            .unwrap();
        let out = tar(&mut src, &argv("cf - /tmp/d"), None);
        assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "tar: Removing leading `/' from member names\n"
        );
        // Names as GNU tar writes them, so kubectl's prefix check passes.
        let listed = tar(&mut Fs::new("l"), &argv("tf -"), Some(&out.stdout));
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout),
            "tmp/d/\ntmp/d/blob.bin\ntmp/d/sub/\ntmp/d/sub/note.txt\n"
        );

        let mut dst = Fs::new("b");
        dst.mkdir("/restore", 0o755).unwrap();
        let x = tar(&mut dst, &argv("-xmf - -C /restore"), Some(&out.stdout));
        assert_eq!(x.exit_code, 0, "{}", String::from_utf8_lossy(&x.stderr));
        assert_eq!(dst.read("/restore/tmp/d/blob.bin").unwrap(), &binary[..]);
        assert_eq!(dst.read("/restore/tmp/d/sub/note.txt").unwrap(), b"hello\n");
        assert!(dst.is_dir("/restore/tmp/d/sub"));
        assert!(matches!(
            dst.get("/restore/tmp/d/blob.bin"),
            Some(Node::File { mode: 0o600, .. })
        ));
        assert!(matches!(
            dst.get("/restore/tmp/d/sub"),
            Some(Node::Dir { mode: 0o750, .. })
        ));
    }

    #[test]
    fn tar_of_a_missing_path_fails_as_gnu_tar() {
        let mut fs = Fs::new("a");
        fs.write("/tmp/ok", b"x".to_vec(), 0o644).unwrap();
        let out = tar(&mut fs, &argv("cf - /nope /tmp/ok"), None);
        assert_eq!(out.exit_code, 2);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "tar: Removing leading `/' from member names\n\
             tar: /nope: Cannot stat: No such file or directory\n\
             tar: Exiting with failure status due to previous errors\n"
        );
        // What could be archived still is.
        let listed = tar(&mut Fs::new("l"), &argv("tf -"), Some(&out.stdout));
        assert_eq!(String::from_utf8_lossy(&listed.stdout), "tmp/ok\n");
    }

    #[test]
    fn tar_extract_errors() {
        let mut fs = Fs::new("a");
        fs.write("/tmp/f", b"x".to_vec(), 0o644).unwrap();
        let archive = tar(&mut fs, &argv("cf - -C /tmp f"), None).stdout;
        let out = tar(&mut fs, &argv("xf - -C /nonexistent"), Some(&archive));
        assert_eq!(out.exit_code, 2);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "tar: /nonexistent: Cannot open: No such file or directory\n\
             tar: Error is not recoverable: exiting now\n"
        );
        let out = tar(&mut fs, &argv("xf -"), Some(b"garbage\n"));
        assert_eq!(out.exit_code, 2);
        assert!(String::from_utf8_lossy(&out.stderr).contains("does not look like a tar archive"));
        // A full disk: the entry fails, the rest goes on, exit 2.
        let mut full = Fs::new("f");
        full.write("/tmp/big", vec![0; CAP - 10], 0o644).unwrap();
        let big = {
            let mut s = Fs::new("s");
            s.write("/tmp/g", vec![1; 20], 0o644).unwrap();
            tar(&mut s, &argv("cf - -C /tmp g"), None).stdout
        };
        let out = tar(&mut full, &argv("xf - -C /tmp"), Some(&big));
        assert_eq!(out.exit_code, 2);
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("g: Cannot open: No space left on device"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn archives_in_the_filesystem_and_members() {
        let mut fs = Fs::new("a");
        fs.mkdir("/tmp/d", 0o755).unwrap();
        fs.write("/tmp/d/a", b"A".to_vec(), 0o644).unwrap();
        fs.write("/tmp/d/b", b"B".to_vec(), 0o644).unwrap();
        assert_eq!(
            tar(&mut fs, &argv("cf /tmp/x.tar -C /tmp d"), None).exit_code,
            0
        );
        fs.remove("/tmp/d").unwrap();
        assert!(fs.get("/tmp/d/a").is_none());
        let out = tar(&mut fs, &argv("xvf /tmp/x.tar -C /tmp d/b"), None);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "d/b\n");
        assert_eq!(fs.read("/tmp/d/b").unwrap(), b"B");
        assert!(fs.get("/tmp/d/a").is_none());
    }

    #[test]
    fn store_follows_pod_uid_restarts_and_deletion() {
        let store = FsStore::default();
        store.with("ns", "p", "uid1", "c", |fs| {
            fs.write("/tmp/f", b"1".to_vec(), 0o644).unwrap()
        });
        assert!(store.with("ns", "p", "uid1", "c", |fs| fs.get("/tmp/f").is_some()));
        assert!(store.with("ns", "p", "uid1", "other", |fs| fs.get("/tmp/f").is_none()));
        // Same name, new pod: empty.
        assert!(store.with("ns", "p", "uid2", "c", |fs| fs.get("/tmp/f").is_none()));
        store.with("ns", "p", "uid2", "c", |fs| {
            fs.write("/tmp/f", b"2".to_vec(), 0o644).unwrap()
        });
        store.reset_container("ns", "p", "c");
        assert!(store.with("ns", "p", "uid2", "c", |fs| fs.get("/tmp/f").is_none()));
        store.with("ns", "p", "uid2", "c", |fs| {
            fs.write("/tmp/f", b"3".to_vec(), 0o644).unwrap()
        });
        store.retain_pods(&HashSet::from(["uid2".to_string()]));
        assert!(store.with("ns", "p", "uid2", "c", |fs| fs.get("/tmp/f").is_some()));
        store.retain_pods(&HashSet::new());
        assert!(store.with("ns", "p", "uid2", "c", |fs| fs.get("/tmp/f").is_none()));
        store.with("ns", "p", "uid2", "c", |fs| {
            fs.write("/tmp/f", b"4".to_vec(), 0o644).unwrap()
        });
        store.forget_pod("ns", "p");
        assert!(store.with("ns", "p", "uid2", "c", |fs| fs.get("/tmp/f").is_none()));
    }

    #[test]
    fn ls_cat_test_mkdir_rm() {
        let mut fs = Fs::new("a");
        assert_eq!(mkdir(&mut fs, &argv("/tmp/a/b")).exit_code, 1);
        assert_eq!(mkdir(&mut fs, &argv("-p /tmp/a/b")).exit_code, 0);
        fs.write("/tmp/a/f.txt", b"text".to_vec(), 0o644).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ls(&fs, &argv("/tmp/a")).stdout),
            "b\nf.txt\n"
        );
        let l = ls(&fs, &argv("-l /tmp/a/f.txt"));
        assert!(String::from_utf8_lossy(&l.stdout).starts_with("-rw-r--r-- 1 root root        4 "));
        let missing = ls(&fs, &argv("/nope"));
        assert_eq!(missing.exit_code, 2);
        assert_eq!(
            String::from_utf8_lossy(&missing.stderr),
            "ls: cannot access '/nope': No such file or directory\n"
        );
        assert_eq!(cat(&fs, &["/tmp/a/f.txt"], None).stdout, b"text");
        let c = cat(&fs, &["/tmp/a"], None);
        assert_eq!(
            (c.exit_code, c.stderr),
            (1, b"cat: /tmp/a: Is a directory\n".to_vec())
        );
        assert_eq!(test(&fs, &argv("-d /tmp/a"), false).exit_code, 0);
        assert_eq!(test(&fs, &argv("-d /tmp/a/f.txt"), false).exit_code, 1);
        assert_eq!(test(&fs, &argv("-f /tmp/a/f.txt ]"), true).exit_code, 0);
        assert_eq!(test(&fs, &argv("! -e /tmp/zz ]"), true).exit_code, 0);
        assert_eq!(test(&fs, &argv("3 -lt 4"), false).exit_code, 0);
        assert_eq!(test(&fs, &argv("-f /x"), true).exit_code, 2);
        assert_eq!(rm(&mut fs, &argv("/tmp/a")).exit_code, 1);
        assert_eq!(rm(&mut fs, &argv("-rf /tmp/a /tmp/zz")).exit_code, 0);
        assert!(fs.get("/tmp/a/b").is_none() && fs.is_dir("/tmp"));
    }
}
