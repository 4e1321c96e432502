//! The `ceph` command line, as run in the toolbox pod: parses the arguments, runs the
//! command on the model and answers with (stdout, stderr, exit code) like the real CLI.
//!
//! Conventions of the real CLI (`src/ceph.in`) reproduced here:
//! - a command's status string (`outs`) goes to **stderr** (`marked out osd.1. `,
//!   `noout is set`); data goes to stdout;
//! - an error prints `Error <ERRNO>: <message>` on stderr and exits with the errno
//!   (ENOENT 2, EPERM 1, EINVAL 22);
//! - a command that matches no signature prints `no valid command found; 10 closest
//!   matches:`, the signatures, then `Error EINVAL: invalid command` (exit 22); a known
//!   command with bad arguments prints `Invalid command: ...`, its signature and help;
//! - `-f/--format json|json-pretty|plain` (xml/yaml answer JSON here); an invalid format is
//!   an argparse error (exit 2);
//! - `-f json` output starts with a newline, as Pacific's does (see the fixtures).
//!
//! `osd out|in|down` follow `OSDMonitor::prepare_command_impl`: an unknown id says
//! `osd.99 does not exist. ` and an already-out OSD `osd.1 is already out. `, both with
//! exit code 0 (the monitor replies 0 when nothing changed).

use std::time::Duration;

use serde_json::Value;

use super::model::{flag_bits, CephModel};
use super::CEPH_VERSION;

const EINVAL: i32 = 22;
const ENOENT: i32 = 2;
const EPERM: i32 = 1;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Plain,
    Json,
    JsonPretty,
}

/// Signatures `ceph` knows, as its `concise_sig` prints them, with their help.
const SIGNATURES: &[(&str, &str)] = &[
    ("status", "show cluster status"),
    ("health [<detail:detail>]", "show cluster health"),
    ("df [<detail:detail>]", "show cluster free space stats"),
    ("pg stat", "show placement group status."),
    ("osd stat", "print summary of OSD map"),
    ("osd ls [<epoch:int>]", "show all OSD ids"),
    (
        "osd tree [<epoch:int>] [<states:up|down|in|out|destroyed>...]",
        "print OSD tree",
    ),
    (
        "osd out <ids>...",
        "set osd(s) <id> [<id>...] out, or use <any|all> to set all osds out",
    ),
    (
        "osd in <ids>...",
        "set osd(s) <id> [<id>...] in, can use <any|all> to automatically set all previously out osds in",
    ),
    (
        "osd down <ids>... [--definitely-dead]",
        "set osd(s) <id> [<id>...] down, or use <any|all> to set all osds down",
    ),
    (
        "osd set <key:full|pause|noup|nodown|noout|noin|nobackfill|norebalance|norecover|noscrub|nodeep-scrub|notieragent|nosnaptrim|pglog_hardlimit> [--yes-i-really-mean-it]",
        "set <key>",
    ),
    (
        "osd unset <key:full|pause|noup|nodown|noout|noin|nobackfill|norebalance|norecover|noscrub|nodeep-scrub|notieragent|nosnaptrim>",
        "unset <key>",
    ),
    ("osd pool ls [<detail:detail>]", "list pools"),
    (
        "osd pool get <pool> <var:size|min_size|pg_num|pgp_num|crush_rule|hashpspool|nodelete|nopgchange|nosizechange|write_fadvise_dontneed|noscrub|nodeep-scrub|hit_set_type|hit_set_period|hit_set_count|hit_set_fpp|use_gmt_hitset|target_max_objects|target_max_bytes|cache_target_dirty_ratio|cache_target_dirty_high_ratio|cache_target_full_ratio|cache_min_flush_age|cache_min_evict_age|erasure_code_profile|min_read_recency_for_promote|all|min_write_recency_for_promote|fast_read|hit_set_grade_decay_rate|hit_set_search_last_n|scrub_min_interval|scrub_max_interval|deep_scrub_interval|recovery_priority|recovery_op_priority|scrub_priority|compression_mode|compression_algorithm|compression_required_ratio|compression_max_blob_size|compression_min_blob_size|csum_type|csum_min_block|csum_max_block|allow_ec_overwrites|fingerprint_algorithm|pg_autoscale_mode|pg_autoscale_bias|pg_num_min|pg_num_max|target_size_bytes|target_size_ratio|dedup_tier|dedup_chunk_algorithm|dedup_cdc_chunk_size|eio|bulk|read_ratio>",
        "get pool parameter <var>",
    ),
    (
        "osd pool set <pool> <var:size|min_size|pg_num|pgp_num|pgp_num_actual|crush_rule|hashpspool|nodelete|nopgchange|nosizechange|write_fadvise_dontneed|noscrub|nodeep-scrub|hit_set_type|hit_set_period|hit_set_count|hit_set_fpp|use_gmt_hitset|target_max_bytes|target_max_objects|cache_target_dirty_ratio|cache_target_dirty_high_ratio|cache_target_full_ratio|cache_min_flush_age|cache_min_evict_age|min_read_recency_for_promote|min_write_recency_for_promote|fast_read|hit_set_grade_decay_rate|hit_set_search_last_n|scrub_min_interval|scrub_max_interval|deep_scrub_interval|recovery_priority|recovery_op_priority|scrub_priority|compression_mode|compression_algorithm|compression_required_ratio|compression_max_blob_size|compression_min_blob_size|csum_type|csum_min_block|csum_max_block|allow_ec_overwrites|fingerprint_algorithm|pg_autoscale_mode|pg_autoscale_bias|pg_num_min|pg_num_max|target_size_bytes|target_size_ratio|dedup_tier|dedup_chunk_algorithm|dedup_cdc_chunk_size|eio|bulk|read_ratio> <val> [--yes-i-really-mean-it]",
        "set pool parameter <var> to <val>",
    ),
    (
        "health mute <code> [<ttl>] [--sticky]",
        "mute health alert",
    ),
    ("health unmute [<code>]", "unmute existing health alert mute(s)"),
    ("config get <who> [<key>]", "Show configuration option(s) for an entity"),
    (
        "config set <who> <name> <value> [--force]",
        "Set a configuration option for one or more entities",
    ),
    ("version", "show mon daemon version"),
];

/// The `<var>` choices of `osd pool get`.
fn pool_get_vars() -> Vec<&'static str> {
    choices_of("osd pool get")
}

fn choices_of(prefix: &str) -> Vec<&'static str> {
    let sig = SIGNATURES
        .iter()
        .find(|(s, _)| s.starts_with(prefix))
        .map(|(s, _)| *s)
        .unwrap_or("");
    let Some(start) = sig.find("<var:").or_else(|| sig.find("<key:")) else {
        return Vec::new();
    };
    let rest = &sig[start + 5..];
    let end = rest.find('>').unwrap_or(rest.len());
    rest[..end].split('|').collect()
}

struct Reply {
    out: String,
    err: String,
    code: i32,
}

impl Reply {
    fn ok(out: String) -> Reply {
        Reply {
            out,
            err: String::new(),
            code: 0,
        }
    }
    fn status(out: String, outs: String) -> Reply {
        Reply {
            out,
            err: if outs.is_empty() {
                String::new()
            } else {
                format!("{outs}\n")
            },
            code: 0,
        }
    }
    fn error(code: i32, name: &str, msg: &str) -> Reply {
        Reply {
            out: String::new(),
            err: format!("Error {name}: {msg}\n"),
            code,
        }
    }
    fn invalid(why: &str, prefix: &str) -> Reply {
        let (sig, help) = SIGNATURES
            .iter()
            .find(|(s, _)| s.starts_with(prefix))
            .copied()
            .unwrap_or(("", ""));
        Reply {
            out: String::new(),
            err: format!(
                "Invalid command: {why}\n{sig} :  {help}\nError EINVAL: invalid command\n"
            ),
            code: EINVAL,
        }
    }
}

/// Runs `ceph <args>` against the model at time `now` (the model is advanced first).
/// `args` may start with `ceph` itself. Returns (stdout, stderr, exit code).
pub fn run_ceph_command(
    model: &mut CephModel,
    args: &[String],
    now: Duration,
) -> (String, String, i32) {
    model.advance(now);
    let r = dispatch(model, args, now);
    (r.out, r.err, r.code)
}

fn dispatch(model: &mut CephModel, args: &[String], now: Duration) -> Reply {
    let mut format = Format::Plain;
    let mut words: Vec<&str> = Vec::new();
    let mut really = false;
    let mut it = args.iter().map(String::as_str).peekable();
    if it.peek() == Some(&"ceph") {
        it.next();
    }
    while let Some(a) = it.next() {
        let fmt_value = if a == "-f" || a == "--format" {
            match it.next() {
                Some(v) => Some(v),
                None => {
                    return Reply {
                        out: String::new(),
                        err: "ceph: error: argument -f/--format: expected one argument\n"
                            .to_string(),
                        code: 2,
                    }
                }
            }
        } else {
            a.strip_prefix("--format=")
        };
        if let Some(v) = fmt_value {
            format = match v {
                "json" | "xml" | "yaml" => Format::Json,
                "json-pretty" | "xml-pretty" => Format::JsonPretty,
                "plain" => Format::Plain,
                other => {
                    return Reply {
                        out: String::new(),
                        err: format!(
                            "ceph: error: argument -f/--format: invalid choice: '{other}' (choose from 'json', 'json-pretty', 'xml', 'xml-pretty', 'plain', 'yaml')\n"
                        ),
                        code: 2,
                    }
                }
            };
            continue;
        }
        match a {
            "-s" | "--status" => words.push("status"),
            "-v" | "--version" => words.push("version"),
            "--yes-i-really-mean-it" => really = true,
            "-c" | "--conf" | "--cluster" | "--id" | "--user" | "-n" | "--name" | "-k"
            | "--keyring" | "--connect-timeout" | "-m" => {
                it.next();
            }
            _ if a.starts_with("--connect-timeout=")
                || a.starts_with("--cluster=")
                || a.starts_with("--conf=")
                || a.starts_with("--id=")
                || a.starts_with("--name=")
                || a.starts_with("--keyring=") => {}
            _ => words.push(a),
        }
    }
    let json = |v: Value| -> Reply {
        Reply::ok(match format {
            Format::JsonPretty => format!("\n{}\n", pretty(&v)),
            _ => format!("\n{v}\n"),
        })
    };
    let plain_or = |text: String, v: Value| -> Reply {
        if format == Format::Plain {
            Reply::ok(text)
        } else {
            json(v)
        }
    };
    match words.as_slice() {
        ["status"] => plain_or(model.status_text(), model.status_json()),
        ["health"] => plain_or(model.health_text(false), model.health_json()),
        ["health", "detail"] => plain_or(model.health_text(true), model.health_detail_json()),
        ["df"] | ["df", "detail"] => plain_or(model.df_text(), model.df_json()),
        ["pg", "stat"] => plain_or(model.pg_stat_text(), model.pg_stat_json()),
        ["osd", "stat"] => plain_or(model.osd_stat_text(), model.osd_stat_json()),
        ["osd", "ls"] => {
            let ids: Vec<i32> = model.osds().map(|o| o.id).collect();
            let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
            plain_or(text, Value::from(ids))
        }
        ["osd", "tree", ..] => plain_or(model.osd_tree_text(), model.osd_tree_json()),
        ["osd", "pool", "ls"] => {
            let names: Vec<String> = model.pools().map(|p| p.name.clone()).collect();
            plain_or(model.osd_pool_ls_text(), Value::from(names))
        }
        ["osd", "pool", "ls", "detail"] => plain_or(
            model.osd_pool_ls_detail_text(),
            model.osd_pool_ls_detail_json(),
        ),
        ["osd", "pool", "get", pool, var] => pool_get(model, pool, var, format),
        ["osd", "pool", "get", ..] => {
            Reply::invalid("missing required parameter var(<choices>)", "osd pool get")
        }
        ["osd", "pool", "set", pool, var, val] => pool_set(model, pool, var, val, really, now),
        ["osd", "pool", "set", ..] => {
            Reply::invalid("missing required parameter val(<string>)", "osd pool set")
        }
        ["osd", verb @ ("out" | "in" | "down"), ids @ ..] => mark(model, verb, ids, now),
        ["osd", verb @ ("set" | "unset"), rest @ ..] => flag(model, verb, rest, now),
        ["health", "mute", rest @ ..] => mute(model, rest, now),
        ["health", "unmute"] => {
            model.unmute(None, now);
            Reply::ok(String::new())
        }
        ["health", "unmute", code] => {
            model.unmute(Some(code), now);
            Reply::ok(String::new())
        }
        ["config", "get", who, key] => config_get(model, who, key),
        ["config", "set", who, key, val, rest @ ..] if rest.iter().all(|r| *r == "--force") => {
            config_set(model, who, key, val, now)
        }
        ["version"] => Reply::ok(format!("{CEPH_VERSION}\n")),
        _ => no_valid_command(&words),
    }
}

/// Ceph's JSON pretty printer indents by four spaces.
fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("JSON values serialize");
    String::from_utf8(buf).expect("JSON is UTF-8")
}

fn no_valid_command(words: &[&str]) -> Reply {
    // "Closest": the signatures sharing the longest prefix of words with the input.
    let mut scored: Vec<(usize, &str)> = SIGNATURES
        .iter()
        .map(|(sig, _)| {
            let sw: Vec<&str> = sig.split(' ').collect();
            let n = sw
                .iter()
                .zip(words)
                .take_while(|(a, b)| !a.starts_with('<') && !a.starts_with('[') && a == b)
                .count();
            (n, *sig)
        })
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut err = String::from("no valid command found; 10 closest matches:\n");
    for (_, sig) in scored.iter().take(10) {
        err.push_str(sig);
        err.push('\n');
    }
    err.push_str("Error EINVAL: invalid command\n");
    Reply {
        out: String::new(),
        err,
        code: EINVAL,
    }
}

fn mark(model: &mut CephModel, verb: &str, ids: &[&str], now: Duration) -> Reply {
    let prefix = format!("osd {verb}");
    if ids.is_empty() {
        return Reply::invalid("missing required parameter ids(<string>)", &prefix);
    }
    let mut targets: Vec<i32> = Vec::new();
    let mut ss = String::new();
    let mut err = 0;
    let mut verbose = true;
    if matches!(ids[0], "any" | "all" | "*") {
        verbose = false;
        targets = model
            .osds()
            .filter(|o| verb != "in" || !o.is_in())
            .map(|o| o.id)
            .collect();
    } else {
        for raw in ids {
            let s = raw.strip_prefix("osd.").unwrap_or(raw);
            match s.parse::<i32>() {
                Ok(id) if id >= 0 => {
                    if model.osd(id).is_none() {
                        ss.push_str(&format!("osd.{id} does not exist. "));
                    } else {
                        targets.push(id);
                    }
                }
                _ => {
                    // parse_osd_id failed: Ceph prints "invalid osd id" and the -1.
                    ss.push_str("invalid osd id-1");
                    err = EINVAL;
                }
            }
        }
    }
    for id in targets {
        let changed = match verb {
            "out" => model.osd_out(id, now),
            "in" => model.osd_in(id, now),
            _ => model.osd_down(id, now),
        }
        .unwrap_or(false);
        if changed {
            let past = match verb {
                "out" => "out",
                "in" => "in",
                _ => "down",
            };
            ss.push_str(&format!("marked {past} osd.{id}. "));
        } else if verbose {
            ss.push_str(&format!("osd.{id} is already {verb}. "));
        }
    }
    if err != 0 {
        return Reply::error(err, "EINVAL", &ss);
    }
    Reply::status(String::new(), ss)
}

fn flag(model: &mut CephModel, verb: &str, rest: &[&str], now: Duration) -> Reply {
    let prefix = format!("osd {verb}");
    let [key] = rest else {
        return Reply::invalid("missing required parameter key(<choices>)", &prefix);
    };
    let choices = choices_of(&prefix);
    if !choices.contains(key) {
        return Reply::invalid(&format!("{key} not in {}", choices.join("|")), &prefix);
    }
    let Some(bits) = flag_bits(key) else {
        return Reply::error(
            EPERM,
            "EPERM",
            &format!("the twin does not model the '{key}' flag"),
        );
    };
    let res = if verb == "set" {
        model.set_flag(key, now)
    } else {
        model.unset_flag(key, now)
    };
    if let Err(e) = res {
        return Reply::error(EINVAL, "EINVAL", &e.to_string());
    }
    let name = super::model::flag_string(bits);
    Reply::status(String::new(), format!("{name} is {verb}"))
}

/// Ceph's `<secs>[s|m|h|d]` TTLs (`parse_timespan`).
fn timespan(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num.parse().ok()?;
    let k = match unit {
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => return None,
    };
    (n >= 0.0).then(|| Duration::from_secs_f64(n * k))
}

fn mute(model: &mut CephModel, rest: &[&str], now: Duration) -> Reply {
    let sticky = rest.contains(&"--sticky");
    let args: Vec<&str> = rest.iter().copied().filter(|a| *a != "--sticky").collect();
    let (code, ttl) = match args.as_slice() {
        [code] => (*code, None),
        [code, ttl] => match timespan(ttl) {
            Some(t) => (*code, Some(t)),
            None => {
                return Reply::error(EINVAL, "EINVAL", &format!("invalid duration: {ttl}"));
            }
        },
        _ => return Reply::invalid("missing required parameter code(<string>)", "health mute"),
    };
    match model.mute(code, ttl, sticky, now) {
        Ok(()) => Reply::ok(String::new()),
        Err(e) => Reply::error(ENOENT, "ENOENT", &e),
    }
}

/// The daemons' config sections `ceph config` accepts as `<who>`.
fn valid_who(who: &str) -> bool {
    let kind = who.split('.').next().unwrap_or("");
    matches!(kind, "global" | "mon" | "mgr" | "osd" | "mds" | "client")
}

fn config_get(model: &CephModel, who: &str, key: &str) -> Reply {
    if !valid_who(who) {
        return Reply::error(EINVAL, "EINVAL", &format!("invalid who '{who}'"));
    }
    match model.config_get(key) {
        Some(v) => Reply::ok(format!("{}\n", super::output::num(v))),
        None => Reply::error(ENOENT, "ENOENT", &format!("unrecognized key '{key}'")),
    }
}

fn config_set(model: &mut CephModel, who: &str, key: &str, val: &str, now: Duration) -> Reply {
    if !valid_who(who) {
        return Reply::error(EINVAL, "EINVAL", &format!("invalid who '{who}'"));
    }
    let Ok(v) = val.parse::<f64>() else {
        return Reply::error(
            EINVAL,
            "EINVAL",
            &format!("error parsing value: '{val}' is not a number"),
        );
    };
    if model.config_set(key, v, now) {
        Reply::ok(String::new())
    } else {
        Reply::error(
            EPERM,
            "EPERM",
            &format!("the twin does not model the option '{key}'"),
        )
    }
}

fn pool_get(model: &CephModel, pool: &str, var: &str, format: Format) -> Reply {
    let vars = pool_get_vars();
    if !vars.contains(&var) {
        return Reply::invalid(&format!("{var} not in {}", vars.join("|")), "osd pool get");
    }
    let Some(p) = model.pool_by_name(pool) else {
        return Reply::error(ENOENT, "ENOENT", &format!("unrecognized pool '{pool}'"));
    };
    let value: Value = match var {
        "size" => p.size.into(),
        "min_size" => p.min_size.into(),
        "pg_num" | "pgp_num" => p.pg_num.into(),
        "crush_rule" => p.crush_rule_name.clone().into(),
        "pg_autoscale_mode" => "on".into(),
        "hashpspool" => "true".into(),
        _ => {
            return Reply::error(
                ENOENT,
                "ENOENT",
                &format!("option '{var}' is not set on pool '{pool}'"),
            )
        }
    };
    if format == Format::Plain {
        let shown = match &value {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        return Reply::ok(format!("{var}: {shown}\n"));
    }
    let mut m = serde_json::Map::new();
    m.insert("pool".into(), p.name.clone().into());
    m.insert("pool_id".into(), p.id.into());
    m.insert(var.into(), value);
    let v = Value::Object(m);
    Reply::ok(match format {
        Format::JsonPretty => format!("\n{}\n", pretty(&v)),
        _ => format!("\n{v}\n"),
    })
}

fn pool_set(
    model: &mut CephModel,
    pool: &str,
    var: &str,
    val: &str,
    really: bool,
    now: Duration,
) -> Reply {
    let choices = choices_of("osd pool set");
    if !choices.contains(&var) {
        return Reply::invalid(
            &format!("{var} not in {}", choices.join("|")),
            "osd pool set",
        );
    }
    let Some(id) = model.pool_by_name(pool).map(|p| p.id) else {
        return Reply::error(ENOENT, "ENOENT", &format!("unrecognized pool '{pool}'"));
    };
    let Ok(n) = val.parse::<u32>() else {
        return Reply::error(
            EINVAL,
            "EINVAL",
            &format!("error parsing integer value '{val}': invalid digit found in string"),
        );
    };
    let res = match var {
        "size" => {
            if n == 1 && !really {
                return Reply::error(
                    EPERM,
                    "EPERM",
                    "configuring pool size as 1 is disabled by default.",
                );
            }
            model.set_pool_size(pool, n, now)
        }
        "min_size" => model.set_pool_min_size(pool, n, now),
        _ => {
            return Reply::error(
                EPERM,
                "EPERM",
                &format!("the twin does not model setting '{var}'"),
            )
        }
    };
    match res {
        Ok(()) => Reply::status(String::new(), format!("set pool {id} {var} to {n}")),
        Err(e) => Reply::error(EINVAL, "EINVAL", &e.to_string()),
    }
}
