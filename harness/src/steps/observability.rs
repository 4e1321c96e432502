//! Observability checks (phases 2, 3 and 5): Prometheus targets and retention, Loki's
//! recent lines and retention, Grafana's dashboards, and Thanos answering for times
//! older than Prometheus keeps. Everything through the API server's service proxy.

use chrono::Utc;
use cucumber::{gherkin::Step, then};

use super::{
    checks::{self, judge, judge_all, judge_yes, table_cells, threshold_of, CheckError, Unit},
    limit::{RetentionLimit, WindowLimit},
};
use crate::{
    probe::{grafana, loki, prom},
    verdict::Comparison,
    world::World,
};

/// How many culprits a message names.
const LIST_LIMIT: usize = 5;

#[then(regex = r"^every Prometheus target of these jobs is up:$")]
async fn prometheus_targets_up(world: &mut World, step: &Step) -> Result<(), CheckError> {
    let jobs = table_cells(step)?;
    let targets = prom::targets(world.client(), &prom::prometheus()).await?;
    let mut problems = Vec::new();
    for job in &jobs {
        let h = prom::job_health(&targets, job);
        if judge_all(
            world,
            format!("prometheus_targets_up[{job}]"),
            h.up,
            h.total,
            "targets",
        ) {
            continue;
        }
        problems.push(if h.total == 0 {
            format!(
                "job {job} has no target (jobs: {})",
                checks::list(prom::jobs(&targets), 10)
            )
        } else {
            format!(
                "job {job}: {} of {} down ({})",
                h.total - h.up,
                h.total,
                checks::list(h.down.iter().map(|(i, e)| format!("{i}: {e}")), LIST_LIMIT)
            )
        });
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: "every target of those jobs up".into(),
        seen: problems.join("; "),
    })
}

#[then(
    regex = r"^(Prometheus|Loki)'s retention is (the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:h|hours?|d|days?))$"
)]
async fn retention_is(
    world: &mut World,
    system: String,
    want: RetentionLimit,
) -> Result<(), CheckError> {
    let want = threshold_of(world, &want.0, Unit::Days)?;
    let secs = if system == "Prometheus" {
        prom::retention_s(world.client(), &prom::prometheus()).await?
    } else {
        loki::retention_s(world.client(), &loki::loki()).await?
    };
    let days = secs / 86_400.0;
    let name = format!("{}_retention_d", system.to_lowercase());
    let figure = if days.is_finite() {
        checks::round3(days)
    } else {
        days
    };
    if judge(world, name, figure, Comparison::Equal, &want, "d") {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("{system} to keep {} days", want.value),
        seen: if days.is_finite() {
            format!("it keeps {} days", checks::round3(days))
        } else {
            "it never deletes anything (retention disabled)".into()
        },
    })
}

fn now_ns() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// `5 minutes` or `the profile's KEY`, in seconds.
fn window(world: &World, since: &WindowLimit) -> Result<checks::Resolved, CheckError> {
    threshold_of(world, &since.0, Unit::Seconds)
}

#[then(expr = "Loki has log lines younger than {window-limit} from every namespace of:")]
async fn loki_lines_per_namespace(
    world: &mut World,
    step: &Step,
    since: WindowLimit,
) -> Result<(), CheckError> {
    let namespaces = table_cells(step)?;
    let since = window(world, &since)?;
    let selectors: Vec<(String, String)> = namespaces
        .iter()
        .map(|ns| (ns.clone(), format!("{{namespace=\"{ns}\"}}")))
        .collect();
    loki_lines(world, &since, selectors).await
}

#[then(
    regex = r#"^Loki has log lines younger than (the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:s|secs?|seconds?|m|mins?|minutes?|h|hours?)) from the pods of these statefulsets in namespace "([^"]+)":$"#
)]
async fn loki_lines_per_statefulset(
    world: &mut World,
    step: &Step,
    since: WindowLimit,
    namespace: String,
) -> Result<(), CheckError> {
    let sets = table_cells(step)?;
    let since = window(world, &since)?;
    // A StatefulSet's pods are named <set>-<ordinal>: the pod label is the one label
    // every Promtail configuration sets.
    let selectors: Vec<(String, String)> = sets
        .iter()
        .map(|s| {
            (
                format!("{namespace}/{s}"),
                format!("{{namespace=\"{namespace}\", pod=~\"{s}-[0-9]+\"}}"),
            )
        })
        .collect();
    loki_lines(world, &since, selectors).await
}

async fn loki_lines(
    world: &mut World,
    since: &checks::Resolved,
    selectors: Vec<(String, String)>,
) -> Result<(), CheckError> {
    let now = now_ns();
    let svc = loki::loki();
    let mut missing = Vec::new();
    for (what, selector) in selectors {
        let (n, _) = loki::recent_lines(world.client(), &svc, &selector, since.value, now).await?;
        // The criterion's threshold is one line; the window is part of the check.
        if !judge_all(world, format!("loki_lines[{what}]"), n, 1, "lines") {
            missing.push(what);
        }
    }
    if let Some(source) = &since.source {
        tracing::debug!("Loki window from {source}");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("log lines of the last {}s in Loki", since.value),
        seen: format!("there are none for {}", checks::list(missing, 10)),
    })
}

#[then(regex = r"^Grafana has these dashboards:$")]
async fn grafana_dashboards(world: &mut World, step: &Step) -> Result<(), CheckError> {
    let wanted = table_cells(step)?;
    let titles = grafana::dashboards(world.client(), &grafana::grafana()).await?;
    let missing = grafana::missing(&titles, &wanted);
    for w in &wanted {
        judge_yes(
            world,
            format!("grafana_dashboard[{w}]"),
            !missing.contains(&w.as_str()),
        );
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("Grafana to have {}", wanted.join(", ")),
        seen: format!(
            "it lacks {} (it has {})",
            missing.join(", "),
            checks::list(titles, 10)
        ),
    })
}

#[then(regex = r#"^Thanos returns "([^"]+)" data older than Prometheus's retention$"#)]
async fn thanos_history(world: &mut World, query: String) -> Result<(), CheckError> {
    let client = world.client().clone();
    let retention = prom::retention_s(&client, &prom::prometheus()).await?;
    // One day past what Prometheus keeps: only long-term storage can answer.
    let age_s = retention + 86_400.0;
    let at = Utc::now().timestamp() - age_s as i64;
    world.measure("thanos_query_age_d", checks::round3(age_s / 86_400.0));
    let result = prom::instant_series(&client, &prom::thanos(), &query, at).await;
    let series = match &result {
        Ok(n) => *n,
        Err(_) => 0,
    };
    if judge_all(
        world,
        format!("thanos_history_series[{query}]"),
        series,
        1,
        "series",
    ) {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!(
            "Thanos to answer {query:?} at {} days ago",
            checks::round3(age_s / 86_400.0)
        ),
        seen: match result {
            Ok(_) => "it returned no series".into(),
            Err(e) => crate::diag::one_line(&e),
        },
    })
}
