//! `--dry-run`: each fault step resolves its targets and prints what it would do to
//! which objects and how it would be undone, then changes nothing. The same text is
//! appended to `reports/<run>/plan.txt`.

use std::{io::Write as _, path::Path};

use super::Plan;

pub const PLAN_FILE: &str = "plan.txt";

/// e.g.
/// ```text
/// dry-run workload-outage: scale StatefulSet openalex/postgresql from 1 to 0 replicas
///   objects: StatefulSet openalex/postgresql
///   revert:  scale StatefulSet openalex/postgresql back to 1 replicas
/// ```
pub fn render(plan: &Plan) -> String {
    format!(
        "dry-run {}: {}\n  objects: {}\n  revert:  {}\n",
        plan.kind,
        plan.action,
        if plan.objects.is_empty() {
            "none".to_owned()
        } else {
            plan.objects.join(", ")
        },
        plan.revert.describe()
    )
}

/// Prints the plan and appends it to `<run_dir>/plan.txt` (best effort: the plan on
/// the terminal is what matters).
pub fn publish(plan: &Plan, run_dir: Option<&Path>) {
    let text = render(plan);
    print!("{text}");
    if let Some(dir) = run_dir {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(PLAN_FILE))
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot append to {PLAN_FILE}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{
        scale::{ScaleBack, Workload, WorkloadKind},
        FaultKind, Revert,
    };

    #[test]
    fn a_plan_names_action_objects_and_revert() {
        let w = Workload {
            kind: WorkloadKind::StatefulSet,
            namespace: "openalex".into(),
            name: "postgresql".into(),
        };
        let plan = Plan {
            kind: FaultKind::WorkloadOutage,
            action: format!("scale {w} from 1 to 0 replicas"),
            objects: vec![w.to_string()],
            revert: Revert::ScaleBack(ScaleBack {
                workload: w,
                replicas: 1,
            }),
        };
        assert_eq!(
            render(&plan),
            "dry-run workload-outage: scale StatefulSet openalex/postgresql from 1 to 0 replicas\n\
             \x20 objects: StatefulSet openalex/postgresql\n\
             \x20 revert:  scale StatefulSet openalex/postgresql back to 1 replicas\n"
        );
    }
}
