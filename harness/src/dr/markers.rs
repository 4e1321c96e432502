//! Markers (DESIGN §3, RPO): while a drill runs, a background task writes one
//! timestamped row every interval into PostgreSQL (`psql` in the database pod), and
//! optionally a ConfigMap `stormdrill-marker-<seq>` in the same namespace as an
//! API-level fallback. Each write's timestamp and outcome is recorded.
//!
//! A marker's timestamp is the harness's clock when the write was sent, written into
//! the row itself, so the RPO (disaster time minus the newest surviving marker's
//! timestamp) compares two readings of one clock. The writer is bounded: it stops
//! when told, when the drill is dropped, after `max_count` markers or after
//! `max_duration`, whichever comes first; `stop` waits for the write in flight.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, TimeZone as _, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::Serialize;
use tokio::{sync::watch, task::JoinHandle};

use super::psql::{self, Psql, PsqlError};

/// Label of every marker ConfigMap; its value is the drill's run id.
pub const RUN_LABEL: &str = "stormdrill.io/marker-run";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "stormdrill");

#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error(
        "{written} of {wanted} marker(s) written within {}s: {}",
        .waited.as_secs_f64(),
        .last_error.as_deref().unwrap_or("no write failed")
    )]
    NoneWritten {
        written: u64,
        wanted: u64,
        waited: Duration,
        last_error: Option<String>,
    },
    #[error("the marker writer stopped before writing enough markers ({0})")]
    Stopped(String),
    #[error("reading the markers back failed")]
    Read(#[source] PsqlError),
    #[error("listing the marker ConfigMaps in {namespace} failed")]
    ListConfigMaps {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// What the writer writes, where, and its bounds.
#[derive(Clone, Debug)]
pub struct MarkerConfig {
    pub psql: Psql,
    pub table: String,
    /// Identifies this drill's markers (rows' `run_id`, ConfigMaps' label).
    pub run_id: String,
    pub interval: Duration,
    pub max_count: u64,
    pub max_duration: Duration,
    /// Also a ConfigMap per marker, in the database's namespace.
    pub configmaps: bool,
}

/// One marker write.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MarkerWrite {
    pub seq: u64,
    /// The marker's timestamp: when the write was sent.
    pub written_at: DateTime<Utc>,
    /// When the database (and the API server) had answered.
    pub acked_at: DateTime<Utc>,
    /// None: the row was committed.
    pub db_error: Option<String>,
    /// None when ConfigMaps are off; Some(None) written; Some(Some(e)) failed.
    pub configmap_error: Option<Option<String>>,
}

impl MarkerWrite {
    pub fn db_ok(&self) -> bool {
        self.db_error.is_none()
    }
}

/// `CREATE TABLE IF NOT EXISTS` and the row, in one transaction (the table may not
/// exist yet, or no longer after a restore of an older backup).
pub fn insert_sql(table: &str, run_id: &str, seq: u64, at: DateTime<Utc>) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (id bigserial primary key, written_at timestamptz, \
         run_id text, seq bigint); INSERT INTO {table} (written_at, run_id, seq) VALUES \
         (to_timestamp({}.{:06}), {}, {seq})",
        at.timestamp(),
        at.timestamp_subsec_micros(),
        psql::quote(run_id)
    )
}

pub fn select_sql(table: &str, run_id: &str) -> String {
    format!(
        "SELECT seq, extract(epoch FROM written_at) FROM {table} WHERE run_id = {} ORDER BY seq",
        psql::quote(run_id)
    )
}

/// `seq|epoch` rows into seq -> timestamp.
pub fn parse_markers(out: &str) -> BTreeMap<u64, DateTime<Utc>> {
    psql::rows(out)
        .into_iter()
        .filter_map(|r| {
            let seq = r.first()?.trim().parse().ok()?;
            let at = epoch_to_utc(r.get(1)?.trim().parse().ok()?)?;
            Some((seq, at))
        })
        .collect()
}

fn epoch_to_utc(secs: f64) -> Option<DateTime<Utc>> {
    let micros = (secs * 1e6).round() as i64;
    Utc.timestamp_micros(micros).single()
}

/// A label value from a run id (at most 63 characters of `[A-Za-z0-9-_.]`).
pub fn label_value(run_id: &str) -> String {
    let v: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

pub fn configmap_name(seq: u64) -> String {
    format!("stormdrill-marker-{seq}")
}

fn configmap(run_id: &str, seq: u64, at: DateTime<Utc>) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": configmap_name(seq),
            "labels": {MANAGED_BY.0: MANAGED_BY.1, RUN_LABEL: label_value(run_id)},
        },
        "data": {
            "written_at": at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "run_id": run_id,
            "seq": seq.to_string(),
        },
    }))
    .expect("a valid ConfigMap")
}

async fn write_one(cfg: &MarkerConfig, seq: u64) -> MarkerWrite {
    let written_at = Utc::now();
    let sql = insert_sql(&cfg.table, &cfg.run_id, seq, written_at);
    let db = cfg.psql.run(&sql);
    let cm = async {
        if !cfg.configmaps {
            return None;
        }
        let api: Api<ConfigMap> = Api::namespaced(cfg.psql.client.clone(), &cfg.psql.namespace);
        let r = tokio::time::timeout(
            cfg.psql.timeout,
            api.create(
                &PostParams::default(),
                &configmap(&cfg.run_id, seq, written_at),
            ),
        )
        .await;
        Some(match r {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(crate::diag::one_line(&e)),
            Err(_) => Some(format!(
                "no answer within {}s",
                cfg.psql.timeout.as_secs_f64()
            )),
        })
    };
    let (db, configmap_error) = tokio::join!(db, cm);
    MarkerWrite {
        seq,
        written_at,
        acked_at: Utc::now(),
        db_error: db.err().map(|e| crate::diag::one_line(&e)),
        configmap_error,
    }
}

/// The background writer.
pub struct MarkerWriter {
    config: MarkerConfig,
    log: Arc<Mutex<Vec<MarkerWrite>>>,
    /// Count of rows committed so far.
    committed: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MarkerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkerWriter")
            .field("config", &self.config)
            .field("writes", &self.writes().len())
            .finish_non_exhaustive()
    }
}

impl Drop for MarkerWriter {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl MarkerWriter {
    /// Starts writing at once, then every interval. Leftover marker ConfigMaps of
    /// earlier drills are deleted first (their names would collide).
    pub async fn start(config: MarkerConfig) -> MarkerWriter {
        if config.configmaps {
            let api: Api<ConfigMap> =
                Api::namespaced(config.psql.client.clone(), &config.psql.namespace);
            let lp = ListParams::default().labels(RUN_LABEL);
            if let Err(e) = api.delete_collection(&DeleteParams::default(), &lp).await {
                tracing::debug!(error = %crate::diag::one_line(&e), "marker ConfigMap cleanup");
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let (committed_tx, committed) = watch::channel(0);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(config.clone(), log.clone(), committed_tx, stop_rx));
        MarkerWriter {
            config,
            log,
            committed,
            stop,
            task: Some(task),
        }
    }

    pub fn config(&self) -> &MarkerConfig {
        &self.config
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<MarkerWrite> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until at least `n` rows are committed (the drill's pre-check).
    pub async fn wait_committed(&self, n: u64, within: Duration) -> Result<(), MarkerError> {
        let mut rx = self.committed.clone();
        let waited = tokio::time::timeout(within, rx.wait_for(|c| *c >= n)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(MarkerError::Stopped(
                self.last_error()
                    .unwrap_or_else(|| "it reached its bound".to_owned()),
            )),
            Err(_) => Err(MarkerError::NoneWritten {
                written: *self.committed.borrow(),
                wanted: n,
                waited: within,
                last_error: self.last_error(),
            }),
        }
    }

    fn last_error(&self) -> Option<String> {
        self.writes().iter().rev().find_map(|w| w.db_error.clone())
    }

    /// Stops the writer after the write in flight and returns every write.
    pub async fn stop(mut self) -> Vec<MarkerWrite> {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.writes()
    }
}

async fn run(
    cfg: MarkerConfig,
    log: Arc<Mutex<Vec<MarkerWrite>>>,
    committed: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 1..=cfg.max_count {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() || started.elapsed() >= cfg.max_duration {
            break;
        }
        let w = write_one(&cfg, seq).await;
        if w.db_ok() {
            committed.send_modify(|n| *n += 1);
        }
        log.lock().unwrap_or_else(|e| e.into_inner()).push(w);
    }
}

/// Markers present after the restore, by seq, with the timestamp they hold.
pub async fn read_back(cfg: &MarkerConfig) -> Result<BTreeMap<u64, DateTime<Utc>>, MarkerError> {
    match cfg.psql.run(&select_sql(&cfg.table, &cfg.run_id)).await {
        Ok(out) => Ok(parse_markers(&out)),
        // No table: the restored database predates every marker.
        Err(PsqlError::Failed { message, .. })
            if message.contains("does not exist") && message.contains(&cfg.table) =>
        {
            Ok(BTreeMap::new())
        }
        Err(e) => Err(MarkerError::Read(e)),
    }
}

/// The marker ConfigMaps present, by seq.
pub async fn read_back_configmaps(
    cfg: &MarkerConfig,
) -> Result<BTreeMap<u64, DateTime<Utc>>, MarkerError> {
    let api: Api<ConfigMap> = Api::namespaced(cfg.psql.client.clone(), &cfg.psql.namespace);
    let lp = ListParams::default().labels(&format!("{RUN_LABEL}={}", label_value(&cfg.run_id)));
    let list = api
        .list(&lp)
        .await
        .map_err(|source| MarkerError::ListConfigMaps {
            namespace: cfg.psql.namespace.clone(),
            source,
        })?;
    Ok(list
        .items
        .iter()
        .filter_map(|cm| {
            let data = cm.data.as_ref()?;
            let seq = data.get("seq")?.parse().ok()?;
            let at = DateTime::parse_from_rfc3339(data.get("written_at")?).ok()?;
            Some((seq, at.with_timezone(&Utc)))
        })
        .collect())
}

/// Deletes this drill's marker ConfigMaps (best effort: they are labelled).
pub async fn cleanup_configmaps(cfg: &MarkerConfig) {
    let api: Api<ConfigMap> = Api::namespaced(cfg.psql.client.clone(), &cfg.psql.namespace);
    let lp = ListParams::default().labels(&format!("{RUN_LABEL}={}", label_value(&cfg.run_id)));
    if let Err(e) = api.delete_collection(&DeleteParams::default(), &lp).await {
        tracing::debug!(error = %crate::diag::one_line(&e), "marker ConfigMap cleanup");
    }
}

/// The markers against the backup: which had to come back, which must not have.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MarkerCounts {
    /// Rows committed (as the harness saw it).
    pub committed: u64,
    pub failed: u64,
    /// Committed before the Backup was created: the backup holds them.
    pub before_backup: u64,
    /// Sent after the backup was seen Completed: the backup cannot hold them.
    pub after_backup: u64,
    /// Between the two: either way.
    pub during_backup: u64,
    pub lost_before_backup: u64,
    pub present_after_backup: u64,
    /// Markers of this drill present after the restore.
    pub surviving: u64,
}

/// Classifies `writes` by the backup's creation (`backup_asked`) and observed
/// completion (`backup_done`), against the seqs present after the restore.
pub fn classify(
    writes: &[MarkerWrite],
    surviving: &BTreeSet<u64>,
    backup_asked: DateTime<Utc>,
    backup_done: DateTime<Utc>,
) -> MarkerCounts {
    let mut c = MarkerCounts {
        surviving: surviving.len() as u64,
        ..MarkerCounts::default()
    };
    for w in writes {
        if !w.db_ok() {
            c.failed += 1;
            continue;
        }
        c.committed += 1;
        let present = surviving.contains(&w.seq);
        if w.acked_at < backup_asked {
            c.before_backup += 1;
            if !present {
                c.lost_before_backup += 1;
            }
        } else if w.written_at > backup_done {
            c.after_backup += 1;
            if present {
                c.present_after_backup += 1;
            }
        } else {
            c.during_backup += 1;
        }
    }
    c
}

/// RPO in seconds: the disaster minus the newest surviving marker; None if none survived.
pub fn rpo_s(disaster: DateTime<Utc>, surviving: &BTreeMap<u64, DateTime<Utc>>) -> Option<f64> {
    let newest = surviving.values().max()?;
    Some(secs_between(*newest, disaster))
}

/// `to - from` in seconds (negative when `to` is earlier).
pub fn secs_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> DateTime<Utc> {
        epoch_to_utc(1_800_000_000.0 + s).unwrap()
    }

    fn w(seq: u64, sent: f64, ok: bool) -> MarkerWrite {
        MarkerWrite {
            seq,
            written_at: t(sent),
            acked_at: t(sent + 0.05),
            db_error: (!ok).then(|| "connection refused".to_owned()),
            configmap_error: None,
        }
    }

    #[test]
    fn sql_round_trips_timestamps() {
        let at = t(0.123456);
        let sql = insert_sql("stormdrill_markers", "run 'a'", 7, at);
        assert!(sql.starts_with("CREATE TABLE IF NOT EXISTS stormdrill_markers (id bigserial primary key, written_at timestamptz, run_id text, seq bigint); INSERT"), "{sql}");
        assert!(
            sql.ends_with("VALUES (to_timestamp(1800000000.123456), 'run ''a''', 7)"),
            "{sql}"
        );
        let rows = parse_markers("7|1800000000.123456\n8|1800000001\nnot|a row\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[&7], at);
        assert_eq!(
            select_sql("m", "r"),
            "SELECT seq, extract(epoch FROM written_at) FROM m WHERE run_id = 'r' ORDER BY seq"
        );
    }

    #[test]
    fn labels_are_valid_label_values() {
        assert_eq!(
            label_value("20261125T231000Z-ab12/velero-dr"),
            "20261125T231000Z-ab12-velero-dr"
        );
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
        assert_eq!(label_value("-a-"), "a");
        assert_eq!(configmap_name(12), "stormdrill-marker-12");
        let cm = configmap("r", 3, t(0.5));
        assert_eq!(
            cm.data.unwrap()["written_at"],
            "2027-01-15T08:00:00.500000Z"
        );
    }

    #[test]
    fn markers_are_judged_against_the_backup() {
        // Backup created at 10.0 s, seen Completed at 12.0 s.
        let writes = [
            w(1, 8.0, true),
            w(2, 9.0, true),
            w(3, 9.5, false),
            w(4, 10.5, true),
            w(5, 12.5, true),
            w(6, 13.5, true),
        ];
        let surviving: BTreeSet<u64> = [1, 4].into();
        let c = classify(&writes, &surviving, t(10.0), t(12.0));
        assert_eq!(
            c,
            MarkerCounts {
                committed: 5,
                failed: 1,
                before_backup: 2,
                after_backup: 2,
                during_backup: 1,
                lost_before_backup: 1,
                present_after_backup: 0,
                surviving: 2,
            }
        );
        let back: BTreeMap<u64, DateTime<Utc>> = [(1, t(8.0)), (4, t(10.5))].into();
        assert_eq!(rpo_s(t(20.0), &back), Some(9.5));
        assert_eq!(rpo_s(t(20.0), &BTreeMap::new()), None);
    }
}
