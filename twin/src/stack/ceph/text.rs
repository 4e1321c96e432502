//! Plain-text outputs (no `-f`), approximating Ceph's layouts: `Monitor::get_cluster_status`
//! and `PGMapDigest::print_summary` for `ceph -s`, `TextTable` for `osd tree` and `df`,
//! `print_oneline_summary` for `pg stat`; numbers formatted with Ceph's `byte_u_t`,
//! `si_u_t`, `weightf_t` and `timespan_str`.

use std::time::Duration;

use super::health::HealthCheck;
use super::model::{flag_string, CephModel};
use super::pgstate::pg_state_string;

/// Ceph's `format_u`: a number with a unit, at most 7 characters with the unit when it
/// has a fraction (so `1.6 GiB`, `316 MiB`, `5.06k`).
// `is_multiple_of` is newer than the workspace's rust-version (1.85).
#[allow(clippy::manual_is_multiple_of)]
fn format_u(v: u64, n: u64, index: usize, mult: u64, unit: &str) -> String {
    if index == 0 || v % mult == 0 {
        return format!("{n}{unit}");
    }
    let x = v as f64 / mult as f64;
    let mut s = String::new();
    for precision in (0..=2).rev() {
        s = format!("{x:.precision$}{unit}");
        if s.len() <= 7 {
            break;
        }
    }
    s
}

/// `byte_u_t`: `0 B`, `449 KiB`, `1.6 GiB`.
pub(super) fn byte_u(v: u64) -> String {
    const UNITS: [&str; 7] = [" B", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB"];
    let (mut n, mut i) = (v, 0);
    while n >= 1024 && i < 6 {
        n /= 1024;
        i += 1;
    }
    format_u(v, n, i, 1u64 << (10 * i), UNITS[i])
}

/// `si_u_t`: `22`, `5.06k`, `1.22M`.
pub(super) fn si_u(v: u64) -> String {
    const UNITS: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let (mut n, mut i, mut mult) = (v, 0, 1u64);
    while n >= 1000 && i < 6 {
        n /= 1000;
        i += 1;
        mult *= 1000;
    }
    format_u(v, n, i, mult, UNITS[i])
}

/// Ceph's `timespan_str`: `1.5s`, `66s`, `5m`, `2h`, `3d`, `2w`, `4M`, `1y`.
pub(super) fn timespan_str(d: Duration) -> String {
    let nsec = d.as_nanos();
    if nsec < 2_000_000_000 {
        let s = format!("{:.6}", nsec as f64 / 1e9);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return format!("{s}s");
    }
    let sec = d.as_secs();
    if sec < 120 {
        return format!("{sec}s");
    }
    let min = sec / 60;
    if min < 120 {
        return format!("{min}m");
    }
    let hr = min / 60;
    if hr < 48 {
        return format!("{hr}h");
    }
    let day = hr / 24;
    if day < 14 {
        return format!("{day}d");
    }
    let wk = day / 7;
    if wk < 12 {
        return format!("{wk}w");
    }
    let mn = day / 30;
    if mn < 24 {
        return format!("{mn}M");
    }
    format!("{}y", day / 365)
}

/// `weightf_t`: fixed 5 decimals, `0` for (nearly) zero.
fn weightf(w: f64) -> String {
    if w < 0.000_001 {
        "0".into()
    } else {
        format!("{w:.5}")
    }
}

fn percentify(p: f64) -> String {
    if p < 0.01 {
        "0".into()
    } else {
        format!("{p:.2}")
    }
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Ceph's `TextTable`: columns separated by two spaces, each with its header and cell
/// alignment.
struct TextTable {
    cols: Vec<(&'static str, Align, Align)>,
    rows: Vec<Vec<String>>,
}

impl TextTable {
    fn new(cols: Vec<(&'static str, Align, Align)>) -> TextTable {
        TextTable {
            cols,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let widths: Vec<usize> = self
            .cols
            .iter()
            .enumerate()
            .map(|(i, (h, _, _))| {
                self.rows
                    .iter()
                    .map(|r| r[i].len())
                    .chain(std::iter::once(h.len()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let pad = |s: &str, w: usize, a: Align| match a {
            Align::Left => format!("{s:<w$}"),
            Align::Right => format!("{s:>w$}"),
        };
        let mut out = String::new();
        let header: Vec<String> = self
            .cols
            .iter()
            .zip(&widths)
            .map(|((h, ha, _), w)| pad(h, *w, *ha))
            .collect();
        out.push_str(&header.join("  "));
        out.push('\n');
        for r in &self.rows {
            let line: Vec<String> = r
                .iter()
                .zip(self.cols.iter().zip(&widths))
                .map(|(c, ((_, _, ca), w))| pad(c, *w, *ca))
                .collect();
            out.push_str(&line.join("  "));
            out.push('\n');
        }
        out
    }
}

impl CephModel {
    fn since(&self, t: Duration) -> String {
        timespan_str(self.now.saturating_sub(t))
    }

    /// The `osd:` line of `ceph -s` / `ceph osd stat` (`OSDMap::print_summary`).
    fn osd_summary_line(&self, extra: bool) -> String {
        let up = self.osds.values().filter(|o| o.up).count();
        let inn = self.osds.values().filter(|o| o.in_).count();
        let mut s = format!(
            "{} osds: {up} up (since {}), {inn} in (since {})",
            self.osds.len(),
            self.since(self.last_up_change),
            self.since(self.last_in_change)
        );
        if extra {
            s.push_str(&format!("; epoch: e{}", self.epoch));
        }
        let temp = self.num_pg_temp();
        if temp > 0 {
            s.push_str(&format!("; {temp} remapped pgs"));
        }
        s
    }

    fn recovery_summary_lines(&self, s: &super::output::Stats) -> Vec<String> {
        let mut v = Vec::new();
        if s.degraded > 0 && s.copies > 0 {
            v.push(format!(
                "{}/{} objects degraded ({:.3}%)",
                s.degraded,
                s.copies,
                s.degraded as f64 / s.copies as f64 * 100.0
            ));
        }
        if s.misplaced > 0 && s.copies > 0 {
            v.push(format!(
                "{}/{} objects misplaced ({:.3}%)",
                s.misplaced,
                s.copies,
                s.misplaced as f64 / s.copies as f64 * 100.0
            ));
        }
        v
    }

    /// `ceph status` / `ceph -s`.
    pub fn status_text(&self) -> String {
        let checks = self.health_checks();
        let s = self.stats();
        let status = self.health_status();
        let mut out = String::new();
        out.push_str("  cluster:\n");
        out.push_str(&format!("    id:     {}\n", self.fsid));
        out.push_str(&format!("    health: {}", status.as_str()));
        for c in checks.iter().filter(|c| !self.is_muted(c)) {
            out.push_str(&format!("\n            {}", c.message));
        }
        let muted: Vec<&str> = checks
            .iter()
            .filter(|c| self.is_muted(c))
            .map(|c| c.name.as_str())
            .collect();
        if !muted.is_empty() {
            out.push_str(&format!("\n            (muted: {})", muted.join(" ")));
        }
        out.push_str("\n \n  services:\n");
        out.push_str(&format!(
            "    mon: {} daemons, quorum {} (age {})\n",
            self.mons.len(),
            self.mons.join(","),
            self.since(Duration::ZERO)
        ));
        let mut mgr = format!(
            "    mgr: {}(active, since {})",
            self.mgr,
            self.since(Duration::ZERO)
        );
        if !self.mgr_standbys.is_empty() {
            mgr.push_str(&format!(", standbys: {}", self.mgr_standbys.join(", ")));
        }
        out.push_str(&mgr);
        out.push('\n');
        out.push_str(&format!("    osd: {}\n", self.osd_summary_line(false)));
        if self.flags != 0 {
            out.push_str(&format!("         flags {}\n", flag_string(self.flags)));
        }
        out.push_str(" \n  data:\n");
        out.push_str(&format!(
            "    pools:   {} pools, {} pgs\n",
            self.pools.len(),
            s.num_pgs
        ));
        out.push_str(&format!(
            "    objects: {} objects, {}\n",
            si_u(s.objects),
            byte_u(s.data_bytes)
        ));
        out.push_str(&format!(
            "    usage:   {} used, {} / {} avail\n",
            byte_u(s.used),
            byte_u(s.avail),
            byte_u(s.total)
        ));
        out.push_str("    pgs:     ");
        let mut pad = false;
        let cont = "             ";
        let inactive = s.num_pgs - s.active;
        if inactive > 0 {
            let p = inactive as f32 / s.num_pgs as f32;
            out.push_str(&format!("{:.3}% pgs not active\n", f64::from(p) * 100.0));
            pad = true;
        }
        for line in self.recovery_summary_lines(&s) {
            if pad {
                out.push_str(cont);
            }
            out.push_str(&line);
            out.push('\n');
            pad = true;
        }
        let width = s
            .by_state
            .iter()
            .map(|(_, n)| n.to_string().len())
            .max()
            .unwrap_or(1);
        for (bits, n) in &s.by_state {
            if pad {
                out.push_str(cont);
            }
            pad = true;
            out.push_str(&format!("{:<width$} {}\n", n, pg_state_string(*bits)));
        }
        let client = s.writes;
        let recovery = s.rec_objects > 0;
        if client || recovery {
            out.push_str(" \n  io:\n");
            if client {
                out.push_str(&format!(
                    "    client:   {}/s wr, 0 op/s rd, {} op/s wr\n",
                    byte_u(s.wr_bytes_sec),
                    si_u(s.wr_ops_sec)
                ));
            }
            if recovery {
                out.push_str(&format!(
                    "    recovery: {}/s, {} objects/s\n",
                    byte_u(s.rec_bytes_sec),
                    si_u(s.rec_objects_sec)
                ));
            }
        }
        out.push_str(" \n");
        out
    }

    /// `ceph health` and `ceph health detail`.
    pub fn health_text(&self, detail: bool) -> String {
        let checks = self.health_checks();
        let status = self.health_status();
        let mut out = status.as_str().to_string();
        let (muted, raised): (Vec<&HealthCheck>, Vec<&HealthCheck>) =
            checks.iter().partition(|c| self.is_muted(c));
        if !muted.is_empty() {
            let names: Vec<&str> = muted.iter().map(|c| c.name.as_str()).collect();
            out.push_str(&format!(" (muted: {})", names.join(" ")));
        }
        if !raised.is_empty() {
            let msgs: Vec<&str> = raised.iter().map(|c| c.message.as_str()).collect();
            out.push(' ');
            out.push_str(&msgs.join("; "));
        }
        out.push('\n');
        if detail {
            for c in &checks {
                // `health detail` marks a muted check: `(MUTED[, STICKY])`.
                let muted = match self.mutes.get(&c.name) {
                    Some(m) if self.is_muted(c) && m.sticky => " (MUTED, STICKY)",
                    Some(_) if self.is_muted(c) => " (MUTED)",
                    _ => "",
                };
                out.push_str(&format!(
                    "{} {}: {}{muted}\n",
                    c.severity.tag(),
                    c.name,
                    c.message
                ));
                for d in &c.detail {
                    out.push_str(&format!("    {d}\n"));
                }
            }
        }
        out
    }

    /// `ceph osd tree`.
    pub fn osd_tree_text(&self) -> String {
        use Align::{Left as L, Right as R};
        let mut t = TextTable::new(vec![
            ("ID", L, R),
            ("CLASS", L, R),
            ("WEIGHT", L, R),
            ("TYPE NAME", L, L),
            ("STATUS", L, R),
            ("REWEIGHT", L, R),
            ("PRI-AFF", L, R),
        ]);
        let total: f64 = self.osds.values().map(|o| o.crush_weight).sum();
        t.row(vec![
            "-1".into(),
            String::new(),
            weightf(total),
            "root default".into(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        for h in &self.hosts {
            let mine: Vec<_> = self.osds.values().filter(|o| o.host == h.name).collect();
            let w: f64 = mine.iter().map(|o| o.crush_weight).sum();
            t.row(vec![
                h.id.to_string(),
                String::new(),
                weightf(w),
                format!("    host {}", h.name),
                String::new(),
                String::new(),
                String::new(),
            ]);
            for o in mine {
                t.row(vec![
                    o.id.to_string(),
                    o.class.as_str().into(),
                    weightf(o.crush_weight),
                    format!("        {}", o.name()),
                    if o.up { "up" } else { "down" }.into(),
                    format!("{:.5}", o.reweight()),
                    format!("{:.5}", 1.0),
                ]);
            }
        }
        t.render()
    }

    /// `ceph pg stat`.
    pub fn pg_stat_text(&self) -> String {
        let s = self.stats();
        let mut by_bits = s.by_state.clone();
        by_bits.sort();
        let states: Vec<String> = by_bits
            .iter()
            .map(|(b, n)| format!("{n} {}", pg_state_string(*b)))
            .collect();
        let mut out = format!(
            "{} pgs: {}; {} data, {} used, {} / {} avail",
            s.num_pgs,
            states.join(", "),
            byte_u(s.data_bytes),
            byte_u(s.used),
            byte_u(s.avail),
            byte_u(s.total)
        );
        if s.writes {
            out.push_str(&format!(
                "; {}/s wr, {} op/s",
                byte_u(s.wr_bytes_sec),
                si_u(s.wr_ops_sec)
            ));
        }
        for line in self.recovery_summary_lines(&s) {
            out.push_str("; ");
            out.push_str(&line);
        }
        if s.rec_objects > 0 {
            out.push_str(&format!(
                "; {}/s, {} objects/s recovering",
                byte_u(s.rec_bytes_sec),
                si_u(s.rec_objects_sec)
            ));
        }
        out.push('\n');
        out
    }

    /// `ceph osd stat`.
    pub fn osd_stat_text(&self) -> String {
        format!("{}\n", self.osd_summary_line(true))
    }

    /// `ceph osd pool ls`.
    pub fn osd_pool_ls_text(&self) -> String {
        self.pools
            .values()
            .map(|p| format!("{}\n", p.name))
            .collect()
    }

    /// `ceph osd pool ls detail`.
    pub fn osd_pool_ls_detail_text(&self) -> String {
        let mut out = String::new();
        for p in self.pools.values() {
            out.push_str(&format!(
                "pool {} '{}' replicated size {} min_size {} crush_rule {} object_hash rjenkins pg_num {} pgp_num {} autoscale_mode on last_change {} flags hashpspool stripe_width 0 application {}\n",
                p.id, p.name, p.size, p.min_size, p.crush_rule, p.pg_num, p.pg_num, p.last_change, p.application
            ));
        }
        out.push('\n');
        out
    }

    /// `ceph df`.
    pub fn df_text(&self) -> String {
        use Align::{Left as L, Right as R};
        let pct = |u: u64, t: u64| {
            if t == 0 {
                0.0
            } else {
                u as f64 / t as f64 * 100.0
            }
        };
        let mut raw = TextTable::new(vec![
            ("CLASS", L, L),
            ("SIZE", L, R),
            ("AVAIL", L, R),
            ("USED", L, R),
            ("RAW USED", L, R),
            ("%RAW USED", L, R),
        ]);
        let mut classes: Vec<_> = self.osds.values().map(|o| o.class).collect();
        classes.sort();
        classes.dedup();
        for c in classes {
            let (t, u) = self
                .osds
                .values()
                .filter(|o| o.in_ && o.class == c)
                .fold((0, 0), |a, o| {
                    (a.0 + o.size_bytes, a.1 + self.osd_used_bytes(o.id))
                });
            raw.row(vec![
                c.as_str().into(),
                byte_u(t),
                byte_u(t.saturating_sub(u)),
                byte_u(u),
                byte_u(u),
                format!("{:.2}", pct(u, t)),
            ]);
        }
        let s = self.stats();
        raw.row(vec![
            "TOTAL".into(),
            byte_u(s.total),
            byte_u(s.avail),
            byte_u(s.used),
            byte_u(s.used),
            format!("{:.2}", pct(s.used, s.total)),
        ]);
        let mut pools = TextTable::new(vec![
            ("POOL", L, L),
            ("ID", L, R),
            ("PGS", L, R),
            ("STORED", L, R),
            ("OBJECTS", L, R),
            ("USED", L, R),
            ("%USED", L, R),
            ("MAX AVAIL", L, R),
        ]);
        for p in self.pools.values() {
            let (stored, objects, used, max_avail) = self.pool_usage(p.id);
            pools.row(vec![
                p.name.clone(),
                p.id.to_string(),
                p.pg_num.to_string(),
                byte_u(stored),
                si_u(objects),
                byte_u(used),
                percentify(pct(used, used + max_avail)),
                byte_u(max_avail),
            ]);
        }
        format!(
            "--- RAW STORAGE ---\n{} \n--- POOLS ---\n{}",
            raw.render(),
            pools.render()
        )
    }
}

#[cfg(test)]
mod t {
    use super::*;

    #[test]
    fn units_like_ceph() {
        assert_eq!(byte_u(0), "0 B");
        assert_eq!(byte_u(12884901888), "12 GiB");
        assert_eq!(byte_u(1763540992), "1.6 GiB");
        assert_eq!(byte_u(331218968), "316 MiB");
        assert_eq!(byte_u(11121360896), "10 GiB");
        assert_eq!(si_u(5055), "5.05k");
        assert_eq!(si_u(22), "22");
        assert_eq!(timespan_str(Duration::from_secs(66)), "66s");
        assert_eq!(timespan_str(Duration::from_secs(300)), "5m");
        assert_eq!(timespan_str(Duration::from_millis(1500)), "1.5s");
        assert_eq!(timespan_str(Duration::from_secs(3 * 3600)), "3h");
    }
}
