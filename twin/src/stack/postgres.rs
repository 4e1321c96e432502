//! A simulated PostgreSQL 16 server for containers of the official `postgres` image:
//! `psql`, `pg_isready` and `postgres --version` executed in the pod answer as the
//! real ones do, over data that lives on the pod's PersistentVolume, and the API data
//! plane reads the same data ([`select_json`], [`query`]).
//!
//! **Where the data lives.** PGDATA (the container's `PGDATA`, default
//! `/var/lib/postgresql/data`) is looked up among the container's volumeMounts; the
//! volume's claim, when Bound, names the PV whose contents ([`crate::voldata`]) hold
//! the data directory: `PG_VERSION`, `global/twin-cluster.json` (roles, password,
//! databases), `postmaster.pid`, and one JSON file per table,
//! `base/<database>/<table>.json`. So data survives container restarts, pod deletion
//! and rescheduling, is copied by Velero's file-system backup, and is lost with the
//! PV. Without a bound claim (or without a volume at PGDATA) the pod gets an
//! in-memory data directory of its own, lost when the pod goes, and its log says so.
//!
//! **Start.** When the container runs ([`run`] watches pods; exec and the data plane
//! also start it on first use): on an empty data directory the entrypoint runs
//! initdb with `POSTGRES_USER` (default `postgres`), `POSTGRES_PASSWORD` and
//! `POSTGRES_DB` (default: the user), then loads the OpenAlex sample
//! (`fixtures/sample/`) into tables `works` and `authors` of `POSTGRES_DB`
//! (columns `id text primary key, doi|display_name, title|orcid, publication_year|
//! works_count, cited_by_count, data jsonb` — `data` is the whole OpenAlex object);
//! later starts find the data and log crash recovery or a clean start, as the real
//! server does. A data directory of another major version does not start.
//!
//! **psql** (the subset the harness uses):
//! `psql [-U user] [-d db|conninfo|URI] [-h host] [-p port] [-t] [-A] [-F sep] [-R sep]
//! [--csv] [-X] [-q] [-w] [-P footer=off|null=X|pager=off|format=..] [-v NAME=VALUE]
//! [-c SQL]... [-f -] [DBNAME [USER]]`; without `-c` the script on stdin is run
//! statement by statement (split at top-level `;`; `\q`, `\set`, `\echo`, `\t`, `\a`;
//! `:var`, `:'var'`, `:"var"` interpolated). PGUSER, PGDATABASE, PGHOST, PGPORT and
//! PGPASSWORD are read; the default user is the OS user (`root` in the image, so pass
//! `-U`). Connections: the Unix socket (local), `-h localhost` (trust), or any host
//! name the pod resolves (a Service or pod IP of a pod running this image; password
//! required, as the image's `pg_hba.conf` says). Output: aligned tables with header,
//! separator and `(N rows)` footer and a blank line; `-t` rows only; `-A` unaligned
//! with `|` or `-F`; command tags (`CREATE TABLE`, `INSERT 0 N`, `UPDATE N`,
//! `DELETE N`, `DROP TABLE`, `TRUNCATE TABLE`, `BEGIN`, `COMMIT`, `ROLLBACK`) unless
//! `-q`, after the rows for `RETURNING`; NOTICEs and errors on stderr as libpq prints
//! them (`ERROR:  ...`, `LINE n:` with the caret, `DETAIL:`, `HINT:`). Exit codes:
//! 0; 1 when the (last) `-c` failed or on bad options; 2 when the connection failed
//! (`psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432"
//! failed: FATAL:  database "x" does not exist`, role, password, host, port); 3 when a
//! script stopped on an error with `ON_ERROR_STOP` (without it a script goes on and
//! exits 0). A `-c` string is one implicit transaction (an error rolls back all of
//! it), each script statement its own, unless BEGIN/COMMIT/ROLLBACK say otherwise.
//!
//! **SQL.** `CREATE TABLE [IF NOT EXISTS] t (col type [PRIMARY KEY] [NOT NULL]
//! [UNIQUE] [DEFAULT expr], ..., [PRIMARY KEY (cols)], [UNIQUE (cols)])` with types
//! text/varchar/char/uuid, integer/int/smallint, bigint, serial/bigserial, double
//! precision/real/float, numeric, boolean, timestamptz/timestamp [with[out] time
//! zone], interval, jsonb/json; `INSERT INTO t [(cols)] VALUES (...), ... | DEFAULT
//! VALUES [ON CONFLICT DO NOTHING] [RETURNING ...]`; `SELECT items [FROM t] [WHERE
//! cond] [ORDER BY expr|name|n [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n|ALL]
//! [OFFSET n]` where items are `*`, expressions with `AS` aliases, and the aggregates
//! `count(*)`, `count(x)`, `max`, `min`, `sum` (no GROUP BY); `UPDATE t SET col =
//! expr, ... [WHERE] [RETURNING]`; `DELETE FROM t [WHERE] [RETURNING]`; `DROP TABLE
//! [IF EXISTS] t, ...`; `TRUNCATE [TABLE] t, ...`; `BEGIN`/`START TRANSACTION`,
//! `COMMIT`/`END`, `ROLLBACK`/`ABORT`. Expressions: literals ('strings', numbers,
//! NULL, TRUE/FALSE, `type 'literal'`), columns (optionally `t.col`), `=`, `<>`,
//! `!=`, `<`, `>`, `<=`, `>=`, `AND`, `OR`, `NOT`, `IS [NOT] NULL`, `[NOT] IN (...)`,
//! `+ - * / %`, `||`, `::type` casts, `now()`/`current_timestamp`, `version()`,
//! `current_database()`, `current_user`, `pg_is_in_recovery()`, `extract(field FROM
//! x)`, `to_timestamp(n)`, `lower`, `upper`, `length`, `abs`, `coalesce`, timestamp ±
//! interval and timestamp − timestamp. Values print as PostgreSQL does (timestamptz
//! `2024-01-01 10:00:00.123456+00` in UTC, float8 shortest, jsonb with its key
//! order, booleans `t`/`f`). Errors carry PostgreSQL's messages, SQLSTATEs and
//! positions: unknown relation/column/type/function, syntax errors, invalid input,
//! operator type mismatches, not-null and unique violations (with DETAIL), aborted
//! transactions. Anything else is a syntax error at its first token.
//!
//! **Simplifications.** No GROUP BY/HAVING/JOIN/subqueries/CTEs/DISTINCT, no
//! schemas but `public`, no ALTER, no indexes (unique checks scan), no LIKE; numeric
//! arithmetic goes through double precision; `smallint`/`real`/`json`/`timestamp(p)`
//! are stored as integer/double/jsonb/timestamp; sequences roll back with their
//! transaction; the session time zone is UTC; concurrent sessions are serialized per
//! data directory (each psql run holds its lock); `-x`, `-H`, `-l`, `-e`, `-a`, `-1`,
//! `-o` and other psql options are refused with a message naming them; wide
//! (East Asian) characters count as one column in aligned output; multi-line values
//! are not wrapped with `+` markers; the server keeps no WAL (a volume copy taken any
//! time is consistent). The server logs its start, errors (with `STATEMENT:`) and
//! shutdowns to the container's log.

mod engine;
mod psql;
mod sql;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

pub use engine::{Outcome, PgError, StmtResult, Ty, Value as SqlValue};

use crate::ctx::{obj, reconcile_loop, Ctx};
use crate::sim::{ExecOutput, ExecRequest};
use crate::voldata::Files;

/// What runs behind `postgres` images (`--postgres`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PostgresBackend {
    /// This module's engine and psql: no system packages.
    #[default]
    Simulated,
    /// The installed PostgreSQL server as a local process ([`crate::procs::postgres`]).
    Real,
}

impl PostgresBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            PostgresBackend::Simulated => "simulated",
            PostgresBackend::Real => "real",
        }
    }

    pub fn parse(s: &str) -> Option<PostgresBackend> {
        match s {
            "simulated" => Some(PostgresBackend::Simulated),
            "real" => Some(PostgresBackend::Real),
            _ => None,
        }
    }
}

/// Version the image tag does not name (the stack's image is `postgres:16.4`).
pub const DEFAULT_VERSION: &str = "16.4";
const DEFAULT_PGDATA: &str = "/var/lib/postgresql/data";
const SOCKET_DIR: &str = "/var/run/postgresql";
const PORT: &str = "5432";

const SAMPLE_WORKS: &str = include_str!("../../../fixtures/sample/works.json");
const SAMPLE_AUTHORS: &str = include_str!("../../../fixtures/sample/authors.json");

/// Registers the `postgres` image's commands with the simulation.
pub fn install(ctx: &Ctx) {
    // The handler lives in `ctx.sim`: it holds the simulation weakly so the twin can
    // be dropped (a strong Ctx inside the Sim it points to would never be freed).
    let sim = Arc::downgrade(&ctx.sim);
    let base = Ctx {
        sim: Arc::new(crate::sim::Sim::default()),
        ..ctx.clone()
    };
    let handler = move |req: &ExecRequest| match sim.upgrade() {
        Some(sim) => handle_exec(
            &Ctx {
                sim,
                ..base.clone()
            },
            req,
        ),
        None => ExecOutput::fail(137, ""),
    };
    ctx.sim
        .register_exec("docker.io/library/postgres", handler.clone());
    ctx.sim.register_exec("postgres", handler);
}

/// Starts the servers of running `postgres` containers (initdb on first start, the
/// server's start and shutdown logs), until `stop`.
pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    reconcile_loop(ctx, &[("", "pods")], stop, |ctx| {
        for pod in ctx.client.list("", "pods", None, None) {
            let Some(container) = postgres_container(&pod) else {
                continue;
            };
            if obj::is_terminating(&pod) {
                shutdown(ctx, &pod, &container);
                continue;
            }
            let running = pod
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["name"] == container.as_str()))
                .is_some_and(|c| c.pointer("/state/running").is_some());
            if running {
                if let Some(srv) = Server::of(ctx, &pod, &container) {
                    let _ = srv.ensure_started(ctx);
                }
            }
        }
    })
    .await;
}

// ----- the server of a pod ---------------------------------------------------------

fn is_postgres_image(image: &str) -> bool {
    crate::procs::image_repository(image) == "postgres"
}

/// `postgres:16.4` -> `16.4`; `postgres:15-alpine` -> `15.8`; no tag -> the default.
fn image_version(image: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    let tag = match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[i + 1..],
        _ => "",
    };
    let v: String = tag
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let v = v.trim_end_matches('.');
    match v.split('.').collect::<Vec<_>>().as_slice() {
        [major, minor, ..] if !major.is_empty() && !minor.is_empty() => format!("{major}.{minor}"),
        ["17"] => "17.0".into(),
        ["16"] => DEFAULT_VERSION.into(),
        ["15"] => "15.8".into(),
        ["14"] => "14.13".into(),
        [major] if !major.is_empty() => format!("{major}.0"),
        _ => DEFAULT_VERSION.into(),
    }
}

fn debian_version(version: &str) -> String {
    format!("{version} (Debian {version}-1.pgdg120+2)")
}

/// The first container of the pod that runs the postgres image.
fn postgres_container(pod: &Value) -> Option<String> {
    pod.pointer("/spec/containers")?
        .as_array()?
        .iter()
        .find(|c| c["image"].as_str().is_some_and(is_postgres_image))
        .and_then(|c| c["name"].as_str())
        .map(String::from)
}

/// Where a pod's data directory is kept.
#[derive(Clone, Debug, PartialEq)]
enum Storage {
    /// On a PV: (PV name, PGDATA relative to the volume's root).
    Volume(String, String),
    /// In memory for this pod only (key in [`crate::voldata::VolumeData`]).
    Ephemeral(String, String),
}

/// The simulated server of one container.
struct Server {
    namespace: String,
    pod: String,
    uid: String,
    container: String,
    version: String,
    env: Vec<(String, String)>,
    storage: Storage,
    /// Why the data is in memory (logged once).
    ephemeral_reason: Option<String>,
    restarts: i64,
    run_as: Option<i64>,
}

impl Server {
    fn of(ctx: &Ctx, pod: &Value, container: &str) -> Option<Server> {
        let spec = pod
            .pointer("/spec/containers")?
            .as_array()?
            .iter()
            .find(|c| c["name"] == container)?;
        let image = spec["image"].as_str().unwrap_or("");
        let env = crate::exec::exec_request(ctx, pod, container, Vec::new()).env;
        let get = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let pgdata = get("PGDATA")
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| DEFAULT_PGDATA.into());
        let pgdata = pgdata.trim_end_matches('/').to_string();
        let uid = obj::uid(pod).to_string();
        // The mount that holds PGDATA (the longest mount path that contains it).
        let mount = spec["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                Some((
                    m["name"].as_str()?,
                    m["mountPath"].as_str()?.trim_end_matches('/'),
                    m["subPath"].as_str().unwrap_or(""),
                ))
            })
            .filter(|(_, path, _)| {
                pgdata == *path || pgdata.starts_with(&format!("{path}/")) || path.is_empty()
            })
            .max_by_key(|(_, path, _)| path.len());
        let (storage, reason) = match mount {
            Some((volume, path, sub)) => {
                let rel = pgdata[path.len()..].trim_start_matches('/');
                let rel = [sub.trim_matches('/'), rel]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/");
                match crate::voldata::pod_volume_pv(ctx, pod, volume) {
                    Some(pv) => (Storage::Volume(pv, rel), None),
                    None => (
                        Storage::Ephemeral(format!("ephemeral:{uid}"), rel),
                        Some(format!(
                            "volume \"{volume}\" has no bound PersistentVolumeClaim"
                        )),
                    ),
                }
            }
            None => (
                Storage::Ephemeral(format!("ephemeral:{uid}"), String::new()),
                Some(format!("no volume is mounted at {pgdata}")),
            ),
        };
        let restarts = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["name"] == container))
            .and_then(|c| c["restartCount"].as_i64())
            .unwrap_or(0);
        let run_as = spec
            .pointer("/securityContext/runAsUser")
            .or_else(|| pod.pointer("/spec/securityContext/runAsUser"))
            .and_then(Value::as_i64);
        Some(Server {
            namespace: obj::namespace(pod).into(),
            pod: obj::name(pod).into(),
            uid,
            container: container.into(),
            version: image_version(image),
            env,
            storage,
            ephemeral_reason: reason,
            restarts,
            run_as,
        })
    }

    fn env(&self, k: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    fn major(&self) -> &str {
        self.version.split('.').next().unwrap_or("16")
    }

    fn superuser(&self) -> String {
        self.env("POSTGRES_USER")
            .filter(|u| !u.is_empty())
            .unwrap_or("postgres")
            .to_string()
    }

    fn default_db(&self) -> String {
        self.env("POSTGRES_DB")
            .filter(|d| !d.is_empty())
            .map(String::from)
            .unwrap_or_else(|| self.superuser())
    }

    fn key(&self) -> (&str, &str) {
        match &self.storage {
            Storage::Volume(k, p) | Storage::Ephemeral(k, p) => (k, p),
        }
    }

    fn version_string(&self) -> String {
        format!("PostgreSQL {} on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14) 12.2.0, 64-bit", debian_version(&self.version))
    }

    fn log(&self, ctx: &Ctx, lines: &[String]) {
        for l in lines {
            ctx.sim.log(&self.namespace, &self.pod, &self.container, l);
        }
    }

    /// Runs `f` on the data directory's files (under the volume's lock).
    fn with_files<R>(&self, ctx: &Ctx, f: impl FnOnce(&mut Files, &str) -> R) -> R {
        let (key, pgdata) = self.key();
        ctx.voldata.update(key, |files| f(files, pgdata))
    }

    /// Starts the server for this container instance unless it already runs:
    /// initdb and the sample on an empty directory. Err when it cannot start.
    fn ensure_started(&self, ctx: &Ctx) -> Result<(), String> {
        let marker = format!("twin:{}/{}", self.uid, self.restarts);
        if let (Some(why), Storage::Ephemeral(key, _)) = (&self.ephemeral_reason, &self.storage) {
            if !ctx.voldata.volumes().contains(key) {
                forget_stale_ephemeral(ctx);
                self.log(ctx, &[format!("{} [1] WARNING:  (stormdrill twin) {why}: the database lives in memory and is lost with the pod", log_time())]);
            }
        }
        let (logs, result) = self.with_files(ctx, |files, pgdata| {
            let pid_path = engine::join(pgdata, "postmaster.pid");
            let previous = files.get(&pid_path).map(|b| String::from_utf8_lossy(b).into_owned());
            if previous.as_deref().is_some_and(|p| p.lines().last() == Some(marker.as_str())) {
                return (Vec::new(), Ok(()));
            }
            let mut logs = Vec::new();
            let t = log_time();
            match files.get(&engine::join(pgdata, "PG_VERSION")).map(|b| String::from_utf8_lossy(b).trim().to_string()) {
                None => {
                    logs.extend(self.initdb(files, pgdata));
                }
                Some(v) if v != self.major() => {
                    logs.push(format!("{t} [1] FATAL:  database files are incompatible with server"));
                    logs.push(format!(
                        "{t} [1] DETAIL:  The data directory was initialized by PostgreSQL version {v}, which is not compatible with this version {}.",
                        debian_version(&self.version)
                    ));
                    return (logs, Err(format!("data directory of PostgreSQL {v}")));
                }
                Some(_) => {
                    logs.push(String::new());
                    logs.push("PostgreSQL Database directory appears to contain a database; Skipping initialization".into());
                    logs.push(String::new());
                }
            }
            logs.push(format!("{t} [1] LOG:  starting {}", self.version_string()));
            logs.push(format!("{t} [1] LOG:  listening on IPv4 address \"0.0.0.0\", port {PORT}"));
            logs.push(format!("{t} [1] LOG:  listening on IPv6 address \"::\", port {PORT}"));
            logs.push(format!("{t} [1] LOG:  listening on Unix socket \"{SOCKET_DIR}/.s.PGSQL.{PORT}\""));
            match &previous {
                Some(p) => {
                    let up = p.lines().nth(2).and_then(|s| s.trim().parse::<i64>().ok()).map(|s| {
                        chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0).map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default()
                    });
                    logs.push(format!("{t} [29] LOG:  database system was interrupted; last known up at {}", up.unwrap_or_default()));
                    logs.push(format!("{t} [29] LOG:  database system was not properly shut down; automatic recovery in progress"));
                    logs.push(format!("{t} [29] LOG:  redo done"));
                }
                None => {
                    if let Some(down) = files.get(&engine::join(pgdata, "twin-shutdown")) {
                        logs.push(format!("{t} [29] LOG:  database system was shut down at {}", String::from_utf8_lossy(down).trim()));
                    }
                }
            }
            logs.push(format!("{t} [1] LOG:  database system is ready to accept connections"));
            let pid = format!(
                "1\n{}\n{}\n{PORT}\n{SOCKET_DIR}\n*\n  {:>8}         0\nready   \n{marker}\n",
                self.env("PGDATA").unwrap_or(DEFAULT_PGDATA),
                chrono::Utc::now().timestamp(),
                5432001
            );
            files.put(&pid_path, pid);
            (logs, Ok(()))
        });
        self.log(ctx, &logs);
        result
    }

    /// initdb and the entrypoint's first-start work; returns the log lines.
    fn initdb(&self, files: &mut Files, pgdata: &str) -> Vec<String> {
        let user = self.superuser();
        let db = self.default_db();
        let password = self.env("POSTGRES_PASSWORD").unwrap_or("").to_string();
        engine::initdb(files, pgdata, self.major(), &user, &password, &db);
        let mut logs = vec![
            "The files belonging to this database system will be owned by user \"postgres\"."
                .to_string(),
            "This user must also own the server process.".into(),
            String::new(),
            "The database cluster will be initialized with locale \"en_US.utf8\".".into(),
            "The default database encoding has accordingly been set to \"UTF8\".".into(),
            "The default text search configuration will be set to \"english\".".into(),
            String::new(),
            format!(
                "fixing permissions on existing directory {} ... ok",
                self.env("PGDATA").unwrap_or(DEFAULT_PGDATA)
            ),
            "creating subdirectories ... ok".into(),
            "running bootstrap script ... ok".into(),
            "performing post-bootstrap initialization ... ok".into(),
            "syncing data to disk ... ok".into(),
            String::new(),
            "Success. You can now start the database server using:".into(),
            String::new(),
            "waiting for server to start.... done".into(),
            "server started".into(),
        ];
        if db != "postgres" {
            logs.push("CREATE DATABASE".into());
        }
        logs.push(String::new());
        let mut session = engine::Session::new(files, pgdata, &db, &user, &self.version_string());
        let loaded = load_sample(&mut session);
        logs.push(format!("/usr/local/bin/docker-entrypoint.sh: running /docker-entrypoint-initdb.d/openalex-sample.sql ({loaded} rows)"));
        logs.push(String::new());
        logs.push("waiting for server to shut down.... done".into());
        logs.push("server stopped".into());
        logs.push(String::new());
        logs.push("PostgreSQL init process complete; ready for start up.".into());
        logs.push(String::new());
        logs
    }

    /// A session's work on this server's database `db` as `user` (the server started).
    fn session<R>(
        &self,
        ctx: &Ctx,
        db: &str,
        user: &str,
        f: impl FnOnce(&mut engine::Session<'_>) -> R,
    ) -> R {
        let version = self.version_string();
        self.with_files(ctx, |files, pgdata| {
            let mut s = engine::Session::new(files, pgdata, db, user, &version);
            let r = f(&mut s);
            s.close();
            r
        })
    }

    fn cluster(&self, ctx: &Ctx) -> Option<engine::Cluster> {
        self.with_files(ctx, |files, pgdata| engine::read_cluster(files, pgdata))
    }
}

/// Drops in-memory data directories of pods that are gone.
fn forget_stale_ephemeral(ctx: &Ctx) {
    let live: std::collections::HashSet<String> = ctx
        .client
        .list("", "pods", None, None)
        .iter()
        .map(|p| format!("ephemeral:{}", obj::uid(p)))
        .collect();
    for v in ctx.voldata.volumes() {
        if v.starts_with("ephemeral:") && !live.contains(&v) {
            ctx.voldata.delete_volume(&v);
        }
    }
}

/// A pod being deleted: the server shuts down cleanly (unless its node is off).
fn shutdown(ctx: &Ctx, pod: &Value, container: &str) {
    if !ctx
        .power
        .is_on(obj::str_at(pod, "/spec/nodeName").unwrap_or(""))
    {
        return;
    }
    let Some(srv) = Server::of(ctx, pod, container) else {
        return;
    };
    let t = log_time();
    let done = srv.with_files(ctx, |files, pgdata| {
        let pid_path = engine::join(pgdata, "postmaster.pid");
        let ours = files.get(&pid_path).is_some_and(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .last()
                .is_some_and(|l| l.starts_with(&format!("twin:{}/", srv.uid)))
        });
        if ours {
            files.remove(&pid_path);
            files.put(
                &engine::join(pgdata, "twin-shutdown"),
                format!("{}\n", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")),
            );
        }
        ours
    });
    if done {
        srv.log(
            ctx,
            &[
                format!("{t} [1] LOG:  received fast shutdown request"),
                format!("{t} [1] LOG:  aborting any active transactions"),
                format!("{t} [26] LOG:  shutting down"),
                format!("{t} [1] LOG:  database system is shut down"),
            ],
        );
    }
}

fn log_time() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.3f UTC")
        .to_string()
}

fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SQL creating and filling `works` and `authors` from the embedded sample, and
/// how many rows it inserts (the real server loads the same, `crate::procs::postgres`).
pub fn sample_sql() -> (String, usize) {
    let mut sql = String::from(
        "CREATE TABLE works (id text PRIMARY KEY, doi text, title text, publication_year integer, cited_by_count integer, data jsonb NOT NULL);\n\
         CREATE TABLE authors (id text PRIMARY KEY, display_name text, orcid text, works_count integer, cited_by_count integer, data jsonb NOT NULL);\n",
    );
    let mut n = 0;
    let text = |v: &Value| v.as_str().map_or("NULL".to_string(), sql_quote);
    let int = |v: &Value| v.as_i64().map_or("NULL".to_string(), |i| i.to_string());
    let works: Vec<Value> = serde_json::from_str(SAMPLE_WORKS).unwrap_or_default();
    let authors: Vec<Value> = serde_json::from_str(SAMPLE_AUTHORS).unwrap_or_default();
    for w in &works {
        sql.push_str(&format!(
            "INSERT INTO works VALUES ({}, {}, {}, {}, {}, {});\n",
            sql_quote(short_id(w["id"].as_str().unwrap_or(""))),
            text(&w["doi"]),
            text(&w["title"]),
            int(&w["publication_year"]),
            int(&w["cited_by_count"]),
            sql_quote(&w.to_string())
        ));
        n += 1;
    }
    for a in &authors {
        sql.push_str(&format!(
            "INSERT INTO authors VALUES ({}, {}, {}, {}, {}, {});\n",
            sql_quote(short_id(a["id"].as_str().unwrap_or(""))),
            text(&a["display_name"]),
            text(&a["orcid"]),
            int(&a["works_count"]),
            int(&a["cited_by_count"]),
            sql_quote(&a.to_string())
        ));
        n += 1;
    }
    (sql, n)
}

/// Creates and fills `works` and `authors` from the embedded sample; returns the rows loaded.
fn load_sample(s: &mut engine::Session<'_>) -> usize {
    let (sql, n) = sample_sql();
    let (_, err) = s.simple_query(&sql);
    if let Some(e) = err {
        tracing::warn!("loading the OpenAlex sample failed: {e}");
        return 0;
    }
    n
}

/// `https://openalex.org/W123` -> `W123` (OpenAlex ids are case-insensitive: upper-cased).
pub fn short_id(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

// ----- the data plane's reads ----------------------------------------------------------

/// Runs SQL on the pod's server (its `POSTGRES_DB`, as its superuser), as a client
/// of the data plane would. Errors: the server's, or `FATAL` ones when the pod has
/// no postgres container or its server cannot start.
pub fn query(ctx: &Ctx, pod: &Value, sql: &str) -> Result<Vec<StmtResult>, PgError> {
    let container = postgres_container(pod).ok_or_else(|| {
        PgError::fatal(
            "08006",
            &format!("pod {} runs no PostgreSQL server", obj::name(pod)),
        )
    })?;
    let srv =
        Server::of(ctx, pod, &container).ok_or_else(|| PgError::fatal("08006", "no server"))?;
    srv.ensure_started(ctx)
        .map_err(|e| PgError::fatal("08006", &format!("the server does not start: {e}")))?;
    let (user, db) = (srv.superuser(), srv.default_db());
    let (results, err) = srv.session(ctx, &db, &user, |s| s.simple_query(sql));
    match err {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// Rows of `table` on the pod's server as JSON: the `data` column when the table has
/// a jsonb one (the OpenAlex objects of `works` and `authors`), else each row as an
/// object. `id` selects by the `id` column (full `https://openalex.org/W…` ids and
/// any case accepted); at most `limit` rows, in insertion order.
pub fn select_json(
    ctx: &Ctx,
    pod: &Value,
    table: &str,
    id: Option<&str>,
    limit: usize,
) -> Result<Vec<Value>, PgError> {
    let ident = format!("\"{}\"", table.replace('"', "\"\""));
    let mut sql = format!("SELECT * FROM {ident}");
    if let Some(id) = id {
        sql.push_str(&format!(
            " WHERE id = {}",
            sql_quote(&short_id(id).to_ascii_uppercase())
        ));
    }
    sql.push_str(&format!(" LIMIT {limit}"));
    let results = query(ctx, pod, &sql)?;
    let Some(Outcome::Rows { columns, rows, .. }) = results.into_iter().next().map(|r| r.outcome)
    else {
        return Ok(Vec::new());
    };
    let data = columns
        .iter()
        .position(|(n, t)| n == "data" && *t == Ty::Json);
    Ok(rows
        .into_iter()
        .map(|r| match data {
            Some(i) => r[i].to_json(Ty::Json),
            None => {
                let mut m = serde_json::Map::new();
                for ((n, t), v) in columns.iter().zip(&r) {
                    m.insert(n.clone(), v.to_json(*t));
                }
                Value::Object(m)
            }
        })
        .collect())
}

// ----- exec: psql, pg_isready, postgres --------------------------------------------------

/// Answers a command run in a `postgres` container.
pub fn handle_exec(ctx: &Ctx, req: &ExecRequest) -> ExecOutput {
    let Some(first) = req.command.first() else {
        return ExecOutput::default();
    };
    let base = first.rsplit('/').next().unwrap_or(first);
    let args = &req.command[1..];
    let Some(pod) = ctx.client.get("", "pods", Some(&req.namespace), &req.pod) else {
        return ExecOutput::not_found(first);
    };
    let container = if pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["name"] == req.container.as_str()))
    {
        req.container.clone()
    } else {
        match postgres_container(&pod) {
            Some(c) => c,
            None => return ExecOutput::not_found(first),
        }
    };
    let version = image_version(&req.image);
    match base {
        "psql" => psql_command(ctx, req, &pod, &container, args),
        "pg_isready" => pg_isready(ctx, req, &pod, &container, args),
        "postgres" | "postmaster" | "pg_ctl" | "initdb" | "pg_dump" | "pg_restore" if args.iter().any(|a| a == "--version" || a == "-V") => {
            ExecOutput::ok(format!("{base} (PostgreSQL) {}\n", debian_version(&version)))
        }
        "postgres" | "postmaster" => ExecOutput::fail(1, "\"root\" execution of the PostgreSQL server is not permitted.\nThe server must be started under an unprivileged user ID to prevent\npossible system security compromise.  See the documentation for\nmore information on how to properly start the server.\n"),
        _ => ExecOutput::not_found(first),
    }
}

/// Where psql connects: the server of a pod, or why it cannot.
fn connect_target(
    ctx: &Ctx,
    req: &ExecRequest,
    pod: &Value,
    container: &str,
    host: Option<&str>,
    port: &str,
) -> Result<(Server, bool, String), String> {
    let here = || Server::of(ctx, pod, container).ok_or_else(|| "no server".to_string());
    match host {
        None | Some("") => {
            let prefix =
                format!("connection to server on socket \"{SOCKET_DIR}/.s.PGSQL.{port}\" failed: ");
            if port != PORT {
                return Err(format!("{prefix}No such file or directory\n\tIs the server running locally and accepting connections on that socket?"));
            }
            Ok((here()?, true, prefix))
        }
        Some(h) if h.starts_with('/') => {
            let prefix = format!(
                "connection to server on socket \"{}/.s.PGSQL.{port}\" failed: ",
                h.trim_end_matches('/')
            );
            if port != PORT || h.trim_end_matches('/') != SOCKET_DIR {
                return Err(format!("{prefix}No such file or directory\n\tIs the server running locally and accepting connections on that socket?"));
            }
            Ok((here()?, true, prefix))
        }
        Some(h) => {
            let ip = match h {
                "localhost" => "::1".to_string(),
                _ => match crate::sim::resolve(ctx, &req.namespace, h) {
                    Ok((_, ips)) if !ips.is_empty() => ips[0].clone(),
                    Err(crate::sim::DnsError::NoServer) => return Err(format!("could not translate host name \"{h}\" to address: Temporary failure in name resolution")),
                    _ => return Err(format!("could not translate host name \"{h}\" to address: Name or service not known")),
                },
            };
            let prefix = format!("connection to server at \"{h}\" ({ip}), port {port} failed: ");
            let refused = || {
                format!("{prefix}Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?")
            };
            if port != PORT {
                return Err(refused());
            }
            let local = matches!(ip.as_str(), "::1" | "127.0.0.1")
                || obj::str_at(pod, "/status/podIP") == Some(ip.as_str());
            let trust = matches!(ip.as_str(), "::1" | "127.0.0.1");
            if local {
                return Ok((here()?, trust, prefix));
            }
            // Another pod's server: by pod IP, or a Service's ready pods.
            let pods = ctx.client.list("", "pods", None, None);
            let by_ip = pods.iter().find(|p| {
                obj::str_at(p, "/status/podIP") == Some(ip.as_str()) && obj::is_pod_ready(p)
            });
            let target = by_ip.cloned().or_else(|| {
                ctx.client
                    .list("", "services", None, None)
                    .into_iter()
                    .find(|s| obj::str_at(s, "/spec/clusterIP") == Some(ip.as_str()))
                    .and_then(|s| {
                        crate::sim::service_pods(ctx, &s)
                            .into_iter()
                            .find(|p| obj::is_pod_ready(p) && !obj::is_terminating(p))
                    })
            });
            let Some(target) = target else {
                return Err(refused());
            };
            let Some(c) = postgres_container(&target) else {
                return Err(refused());
            };
            let node_on =
                obj::str_at(&target, "/spec/nodeName").is_some_and(|n| ctx.power.is_on(n));
            if !node_on {
                return Err(format!("{prefix}Connection timed out\n\tIs the server running on that host and accepting TCP/IP connections?"));
            }
            let srv = Server::of(ctx, &target, &c).ok_or_else(refused)?;
            Ok((srv, false, prefix))
        }
    }
}

fn psql_command(
    ctx: &Ctx,
    req: &ExecRequest,
    pod: &Value,
    container: &str,
    args: &[String],
) -> ExecOutput {
    let env = |k: &str| req.env_var(k).map(String::from);
    let version = debian_version(&image_version(&req.image));
    let opts = match psql::parse_args(args, &env, &version) {
        Ok(psql::Parsed::Run(o)) => o,
        Ok(psql::Parsed::Print(out)) => return out,
        Err(out) => return out,
    };
    let fail2 = |msg: String| ExecOutput::fail(2, format!("psql: error: {msg}\n"));
    let port = opts.port.clone().unwrap_or_else(|| PORT.to_string());
    let (srv, trust, prefix) =
        match connect_target(ctx, req, pod, container, opts.host.as_deref(), &port) {
            Ok(t) => t,
            Err(msg) => return fail2(msg),
        };
    if let Err(why) = srv.ensure_started(ctx) {
        let _ = why;
        return fail2(format!("{prefix}No such file or directory\n\tIs the server running locally and accepting connections on that socket?"));
    }
    let os_user = match srv.run_as {
        Some(999) => "postgres",
        _ => "root",
    };
    let user = opts
        .user
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| os_user.to_string());
    let db = opts
        .db
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    let Some(cluster) = srv.cluster(ctx) else {
        return fail2(format!("{prefix}No such file or directory\n\tIs the server running locally and accepting connections on that socket?"));
    };
    if !trust {
        match opts.password.as_deref() {
            None => return fail2(format!("{prefix}fe_sendauth: no password supplied")),
            Some(p) if !(cluster.roles.contains(&user) && p == cluster.password) => {
                return fail2(format!(
                    "{prefix}FATAL:  password authentication failed for user \"{user}\""
                ));
            }
            Some(_) => {}
        }
    }
    if !cluster.roles.contains(&user) {
        return fail2(format!("{prefix}FATAL:  role \"{user}\" does not exist"));
    }
    if !cluster.databases.contains(&db) {
        return fail2(format!("{prefix}FATAL:  database \"{db}\" does not exist"));
    }
    if db == "template0" {
        return fail2(format!(
            "{prefix}FATAL:  database \"template0\" is not currently accepting connections"
        ));
    }
    let run = srv.session(ctx, &db, &user, |s| {
        psql::run(&opts, s, req.stdin.as_deref())
    });
    if !run.errors.is_empty() {
        let t = log_time();
        let mut lines = Vec::new();
        for (e, q) in &run.errors {
            let at = e
                .position
                .map(|p| format!(" at character {}", p + 1))
                .unwrap_or_default();
            lines.push(format!(
                "{t} [{}] {}:  {}{at}",
                100 + lines.len(),
                e.severity,
                e.message
            ));
            if let Some(d) = &e.detail {
                lines.push(format!("{t} [{}] DETAIL:  {d}", 100 + lines.len()));
            }
            lines.push(format!(
                "{t} [{}] STATEMENT:  {}",
                100 + lines.len(),
                q.trim()
            ));
        }
        srv.log(ctx, &lines);
    }
    run.out
}

fn pg_isready(
    ctx: &Ctx,
    req: &ExecRequest,
    pod: &Value,
    container: &str,
    args: &[String],
) -> ExecOutput {
    let mut host = req.env_var("PGHOST").map(String::from);
    let mut port = req.env_var("PGPORT").unwrap_or(PORT).to_string();
    let mut quiet = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-q" | "--quiet" => quiet = true,
            "-h" | "--host" => host = it.next().cloned(),
            "-p" | "--port" => port = it.next().cloned().unwrap_or(port),
            "-U" | "--username" | "-d" | "--dbname" | "-t" | "--timeout" => {
                it.next();
            }
            "-V" | "--version" => {
                return ExecOutput::ok(format!(
                    "pg_isready (PostgreSQL) {}\n",
                    debian_version(&image_version(&req.image))
                ))
            }
            a if a.starts_with("-h") => host = Some(a[2..].to_string()),
            a if a.starts_with("-p") => port = a[2..].to_string(),
            a if a.starts_with("--host=") => host = Some(a[7..].to_string()),
            a if a.starts_with("--port=") => port = a[7..].to_string(),
            _ => {}
        }
    }
    let shown = match host.as_deref() {
        None | Some("") => format!("{SOCKET_DIR}:{port}"),
        Some(h) => format!("{h}:{port}"),
    };
    let up = connect_target(ctx, req, pod, container, host.as_deref(), &port)
        .is_ok_and(|(srv, _, _)| srv.ensure_started(ctx).is_ok());
    let (msg, code) = if up {
        ("accepting connections", 0)
    } else {
        ("no response", 2)
    };
    let out = if quiet {
        String::new()
    } else {
        format!("{shown} - {msg}\n")
    };
    ExecOutput {
        stdout: out.into_bytes(),
        exit_code: code,
        ..Default::default()
    }
}

/// The OpenAlex sample as loaded into a fresh server (works, authors).
pub fn sample() -> (Vec<Value>, Vec<Value>) {
    (
        serde_json::from_str(SAMPLE_WORKS).unwrap_or_default(),
        serde_json::from_str(SAMPLE_AUTHORS).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests;
