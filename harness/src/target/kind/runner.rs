//! Runs the commands of a plan ([`super::plan::Cmd`]): [`ProcessRunner`] for real,
//! [`Recorder`] in tests (records each argv list and answers from a script).

use std::{
    ffi::OsString,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use super::plan::Cmd;

/// What a finished command printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("`{command}` could not start")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {}s (stopped)", .waited.as_secs())]
    Timeout { command: String, waited: Duration },
}

/// Executes commands. `Sync` so a runner can be shared with blocking tasks.
pub trait Runner: Send + Sync {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError>;
}

/// Runs commands as child processes, with the plan's timeout. `path` replaces `$PATH`
/// (tests simulate missing tools with an empty one).
#[derive(Clone, Debug, Default)]
pub struct ProcessRunner {
    pub path: Option<OsString>,
}

impl ProcessRunner {
    /// The `$PATH` commands are looked up in.
    pub fn search_path(&self) -> Option<OsString> {
        self.path.clone().or_else(|| std::env::var_os("PATH"))
    }

    /// Where `tool` is on the search path, if anywhere.
    pub fn which(&self, tool: &str) -> Option<PathBuf> {
        which_in(self.search_path().as_deref(), tool)
    }
}

/// `tool` found in the folders of `path` (a `$PATH` value) as an executable file.
pub fn which_in(path: Option<&std::ffi::OsStr>, tool: &str) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

impl Runner for ProcessRunner {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let command = cmd.display();
        let spawn_error = |source| RunError::Spawn {
            command: command.clone(),
            source,
        };
        let Some((program, args)) = cmd.argv.split_first() else {
            return Err(spawn_error(std::io::Error::other("empty command")));
        };
        // Resolved here so an empty $PATH means "not found", as it would for a shell.
        let resolved = self
            .which(program)
            .ok_or_else(|| spawn_error(std::io::Error::from(std::io::ErrorKind::NotFound)))?;
        let mut c = Command::new(resolved);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &self.path {
            c.env("PATH", path);
        }
        let mut child = c.spawn().map_err(spawn_error)?;
        // Pipes drained by threads: a chatty command must not block on a full pipe.
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_string(&mut s);
            }
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait().map_err(spawn_error)? {
                Some(status) => break status,
                None if started.elapsed() >= cmd.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RunError::Timeout {
                        command,
                        waited: cmd.timeout,
                    });
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        Ok(Output {
            success: status.success(),
            code: status.code(),
            stdout: t_out.join().unwrap_or_default(),
            stderr: t_err.join().unwrap_or_default(),
        })
    }
}

/// A runner for tests: records every command and answers with the first scripted
/// output whose pattern the command line contains (else success, empty output).
#[derive(Debug, Default)]
pub struct Recorder {
    pub answers: Vec<(String, Output)>,
    pub seen: Mutex<Vec<Vec<String>>>,
}

impl Recorder {
    pub fn answer(mut self, pattern: &str, stdout: &str, success: bool) -> Self {
        self.answers.push((
            pattern.to_owned(),
            Output {
                success,
                code: Some(if success { 0 } else { 1 }),
                stdout: stdout.to_owned(),
                stderr: if success {
                    String::new()
                } else {
                    format!("{pattern} failed")
                },
            },
        ));
        self
    }

    /// Every command line run so far, space-joined.
    pub fn lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|a| a.join(" "))
            .collect()
    }
}

impl Runner for Recorder {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cmd.argv.clone());
        let line = cmd.argv.join(" ");
        Ok(self
            .answers
            .iter()
            .find(|(p, _)| line.contains(p.as_str()))
            .map(|(_, o)| o.clone())
            .unwrap_or(Output {
                success: true,
                code: Some(0),
                ..Output::default()
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_timeout_and_empty_path() {
        let r = ProcessRunner::default();
        let out = r
            .run(&Cmd::new(
                "t",
                ["sh", "-c", "echo out; echo err >&2; exit 3"],
            ))
            .unwrap();
        assert_eq!((out.success, out.code), (false, Some(3)));
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("out\n", "err\n")
        );
        let mut slow = Cmd::new("t", ["sh", "-c", "sleep 5"]);
        slow.timeout = Duration::from_millis(200);
        assert!(matches!(r.run(&slow), Err(RunError::Timeout { .. })));
        let empty = ProcessRunner {
            path: Some(OsString::new()),
        };
        assert!(empty.which("sh").is_none());
        assert!(matches!(
            empty.run(&Cmd::new("t", ["sh", "-c", "true"])),
            Err(RunError::Spawn { .. })
        ));
    }
}
