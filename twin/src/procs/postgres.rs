//! The real PostgreSQL behind `postgres` images (`--postgres real`): Debian's server
//! (`/usr/lib/postgresql/<major>/bin`), started as the official image's entrypoint
//! does. On an empty PGDATA (the container's `PGDATA`, default
//! `/var/lib/postgresql/data`, on its volume): `initdb` with `POSTGRES_USER` (default
//! `postgres`) as superuser and `POSTGRES_PASSWORD` (required, as the image says,
//! unless `POSTGRES_HOST_AUTH_METHOD=trust`), `pg_hba.conf` as the image writes it
//! (local trust, host scram-sha-256), then once the server accepts connections
//! `POSTGRES_DB` created and the OpenAlex sample loaded into it
//! ([`crate::stack::postgres::sample_sql`], the tables the simulated engine loads).
//! The server listens on 127.0.0.1 at the pod's port and on a Unix socket in the
//! process's run directory; exec gets `PGHOST`/`PGPORT` pointing there, so `psql -U
//! USER -d DB` in the pod reaches it as in the image. Stop signal SIGINT (fast
//! shutdown), the image's STOPSIGNAL. The container's args are passed to `postgres`
//! (a leading `postgres` dropped); its `command` is ignored.
//!
//! Differences from the image, on purpose: the server is the installed major version,
//! whatever the tag says (Debian 12 ships 15, the stack's image is 16.4); the
//! locale is C.UTF-8; `/docker-entrypoint-initdb.d` is not read.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{run, Launch, ProcError, Program, Result, User};

/// What scripts/setup.sh installs for `--postgres real`.
pub const PACKAGES: &str = "postgresql-15";
const BINARIES: &[&str] = &["postgres", "initdb", "psql", "pg_isready"];
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
const SQL_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_PGDATA: &str = "/var/lib/postgresql/data";

/// The program of the runtime's table for `postgres` images.
pub struct Postgres {
    bin: PathBuf,
    user: User,
}

/// The newest `/usr/lib/postgresql/<major>/bin` holding every binary we run.
pub fn find_bin_dir() -> Result<PathBuf> {
    find_bin_dir_in(std::path::Path::new("/usr/lib/postgresql"))
}

fn find_bin_dir_in(root: &std::path::Path) -> Result<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, bin)| BINARIES.iter().all(|b| bin.join(b).is_file()))
        .collect();
    majors.sort();
    majors
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| ProcError::Missing {
            what: "--postgres real".into(),
            missing: format!("{} in /usr/lib/postgresql/<major>/bin", BINARIES.join(", ")),
            packages: PACKAGES.into(),
        })
}

impl Postgres {
    /// The installed server, run as the `postgres` account the package created.
    pub fn installed() -> Result<Postgres> {
        let bin = find_bin_dir()?;
        let user = User::lookup("postgres").ok_or_else(|| ProcError::NoUser {
            user: "postgres".into(),
            what: "--postgres real".into(),
            packages: PACKAGES.into(),
        })?;
        Ok(Postgres { bin, user })
    }

    /// For tests: the server, or None with a message (and a failure under CI or
    /// `STORMDRILL_REQUIRE_POSTGRES=1`, where it must be installed).
    pub fn for_test() -> Option<Postgres> {
        match Postgres::installed() {
            Ok(p) => Some(p),
            Err(e) => {
                let required = std::env::var("CI").is_ok_and(|v| v == "true")
                    || std::env::var("STORMDRILL_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
                assert!(!required, "real PostgreSQL is required here: {e}");
                println!("SKIPPED: {e}");
                None
            }
        }
    }

    fn pgdata(&self, launch: &Launch) -> PathBuf {
        // `launch.env` names host paths already where a volume holds them; a PGDATA
        // on no volume lives with the process (lost with the container, as in the image).
        let on_volume = |p: &str| {
            launch
                .mounts
                .iter()
                .any(|(_, d)| std::path::Path::new(p).starts_with(d))
                .then(|| PathBuf::from(p))
        };
        match launch.env_var("PGDATA") {
            Some(p) => on_volume(p),
            None => launch.host_path(DEFAULT_PGDATA),
        }
        .unwrap_or_else(|| launch.run_dir.join("pgdata"))
    }

    fn superuser<'a>(&self, launch: &'a Launch) -> &'a str {
        launch
            .env_var("POSTGRES_USER")
            .filter(|u| !u.is_empty())
            .unwrap_or("postgres")
    }

    fn psql(&self, launch: &Launch, db: &str) -> Command {
        let mut c = self.user.command(self.bin.join("psql"));
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&launch.run_dir)
            .args([
                "-p",
                &launch.port.to_string(),
                "-U",
                self.superuser(launch),
                "-d",
                db,
            ])
            .env_clear()
            .env("PGAPPNAME", "stormdrill-twin-init");
        c
    }
}

impl Program for Postgres {
    fn repository(&self) -> &str {
        "postgres"
    }

    fn user(&self) -> &User {
        &self.user
    }

    fn stop_signal(&self) -> i32 {
        libc::SIGINT
    }

    fn prepare(&self, launch: &Launch) -> Result<(Command, bool)> {
        let pgdata = self.pgdata(launch);
        // Only PGDATA itself is the server's, as the image's entrypoint chowns it.
        self.user.own_dir(&pgdata, 0o700)?;
        let fresh = !pgdata.join("PG_VERSION").exists();
        if fresh {
            let password = launch.env_var("POSTGRES_PASSWORD").unwrap_or("");
            let trust = launch.env_var("POSTGRES_HOST_AUTH_METHOD") == Some("trust");
            if password.is_empty() && !trust {
                return Err(ProcError::Refused(
                    "Error: Database is uninitialized and superuser password is not specified. \
                     You must specify POSTGRES_PASSWORD to a non-empty value for the superuser."
                        .into(),
                ));
            }
            let pwfile = launch.run_dir.join("pwfile");
            self.user.own_file(&pwfile, password.as_bytes())?;
            let mut c = self.user.command(self.bin.join("initdb"));
            c.arg("-D")
                .arg(&pgdata)
                .args([
                    "--username",
                    self.superuser(launch),
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .env_clear()
                .env("LANG", "C.UTF-8");
            let out = run(c, None, INITDB_TIMEOUT);
            let _ = std::fs::remove_file(&pwfile);
            let out = out?;
            if out.code != 0 {
                // initdb's own words (e.g. a non-empty directory: lost+found on a volume root).
                return Err(ProcError::Failed {
                    command: "initdb".into(),
                    code: out.code,
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            let method = if trust { "trust" } else { "scram-sha-256" };
            let hba = pgdata.join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).unwrap_or_default();
            text.push_str(&format!("\nhost all all all {method}\n"));
            std::fs::write(&hba, text).map_err(|source| ProcError::Dir { path: hba, source })?;
        }
        let mut c = self.user.command(self.bin.join("postgres"));
        c.arg("-D")
            .arg(&pgdata)
            .args(["-p", &launch.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                launch.run_dir.display()
            ))
            .args(launch.args.iter().skip(usize::from(
                launch.args.first().is_some_and(|a| a == "postgres"),
            )))
            .env_clear()
            .env("LANG", "C.UTF-8");
        Ok((c, fresh))
    }

    fn probe(&self, launch: &Launch) -> bool {
        // Accepting connections, not merely listening (recovery refuses them).
        let mut c = self.user.command(self.bin.join("pg_isready"));
        c.arg("-q")
            .arg("-h")
            .arg(&launch.run_dir)
            .args(["-p", &launch.port.to_string(), "-t", "1"])
            .env_clear();
        run(c, None, Duration::from_secs(5)).is_ok_and(|o| o.code == 0)
    }

    fn after_ready(&self, launch: &Launch, fresh: bool) -> Result<()> {
        if !fresh {
            return Ok(());
        }
        let user = self.superuser(launch);
        let db = launch
            .env_var("POSTGRES_DB")
            .filter(|d| !d.is_empty())
            .unwrap_or(user)
            .to_string();
        if db != "postgres" {
            let mut c = self.psql(launch, "postgres");
            c.arg("-c")
                .arg(format!("CREATE DATABASE \"{}\"", db.replace('"', "\"\"")));
            check("CREATE DATABASE", run(c, None, SQL_TIMEOUT)?)?;
        }
        let (sql, _) = crate::stack::postgres::sample_sql();
        let c = self.psql(launch, &db);
        check(
            "loading the OpenAlex sample",
            run(
                c,
                Some(format!("BEGIN;\n{sql}COMMIT;\n").as_bytes()),
                SQL_TIMEOUT,
            )?,
        )
    }

    fn exec_env(&self, launch: &Launch) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            // The server's binaries first, as the image's PATH has them.
            ("PATH".into(), format!("{}:{path}", self.bin.display())),
            ("PGHOST".into(), launch.run_dir.display().to_string()),
            ("PGPORT".into(), launch.port.to_string()),
            ("HOME".into(), launch.run_dir.display().to_string()),
        ]
    }
}

fn check(what: &str, o: super::Output) -> Result<()> {
    if o.code == 0 {
        Ok(())
    } else {
        Err(ProcError::Failed {
            command: what.into(),
            code: o.code,
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_complete_major_wins_and_none_names_setup() {
        let root = std::env::temp_dir().join(format!("pg-bins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let e = find_bin_dir_in(&root).expect_err("nothing installed");
        assert!(e.to_string().contains("scripts/setup.sh"), "{e}");
        for (major, bins) in [("14", BINARIES), ("16", &BINARIES[..2]), ("15", BINARIES)] {
            let bin = root.join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for b in bins {
                std::fs::write(bin.join(b), "").unwrap();
            }
        }
        // 16 lacks psql and pg_isready: 15 is the newest we can run.
        assert_eq!(find_bin_dir_in(&root).unwrap(), root.join("15/bin"));
        let _ = std::fs::remove_dir_all(&root);
    }
}
