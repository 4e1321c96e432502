//! `stormdrill recover [JOURNAL|--latest]`: connect to the cluster the journal's run
//! injected faults into, and replay every revert it did not mark done.

use std::path::PathBuf;

use super::{
    journal::{self, JournalError, JOURNAL_FILE},
    session::{self, RecoverError, Recovered},
    FaultCtx,
};
use crate::{
    cli::RecoverArgs,
    target::{
        self,
        power::{TargetConfig, TargetConfigError},
        TargetError, TargetKind, TargetSpec,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum RecoverRunError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Config(#[from] TargetConfigError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Recover(#[from] RecoverError),
}

/// The journal named on the command line: a file, a run folder, or the newest one.
pub fn journal_path(args: &RecoverArgs) -> Result<PathBuf, JournalError> {
    match &args.journal {
        Some(p) if p.is_dir() => Ok(p.join(JOURNAL_FILE)),
        Some(p) => Ok(p.clone()),
        None => journal::latest(&args.report_dir),
    }
}

pub async fn run(args: &RecoverArgs) -> Result<Recovered, RecoverRunError> {
    let path = journal_path(args)?;
    // A missing or damaged journal is the first thing to say: without it there is
    // nothing to recover, whichever cluster the kubeconfig names.
    journal::Contents::read(&path)?;
    let config = match &args.target_config {
        Some(p) => TargetConfig::load(p)?,
        None => TargetConfig::default(),
    };
    let connected = target::connect(&TargetSpec {
        kind: TargetKind::Cluster,
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        ..TargetSpec::default()
    })
    .await?;
    let ctx = FaultCtx {
        client: connected.client().clone(),
        power: connected.node_power(&config),
    };
    let out = session::recover(&path, &ctx, connected.server()).await;
    connected.close().await;
    Ok(out?)
}
