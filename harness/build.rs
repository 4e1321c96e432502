//! Records the git revision the harness is built from (`STORMDRILL_GIT_REV`), for
//! report metadata: `STORMDRILL_GIT_REV` from the environment when set (CI may
//! build from an archive), else `git rev-parse --short HEAD` (with `-dirty` when the
//! tree has changes), else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=STORMDRILL_GIT_REV");
    // Rebuild when HEAD moves (a commit or a checkout); not on every edit.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    let rev = std::env::var("STORMDRILL_GIT_REV")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| {
            let head = git(&["rev-parse", "--short=12", "HEAD"])?;
            // Plumbing that never writes the index (unlike `git status`).
            let dirty = Command::new("git")
                .args(["diff-index", "--quiet", "HEAD", "--"])
                .status()
                .is_ok_and(|s| s.code() == Some(1));
            Some(if dirty { format!("{head}-dirty") } else { head })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STORMDRILL_GIT_REV={rev}");
}
