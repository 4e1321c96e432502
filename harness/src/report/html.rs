//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, nothing
//! fetched) to attach to a ticket or open from a CI artifact: run metadata, the
//! verdict, the criteria table, and per scenario that ran a load its latency chart
//! with fault / detection / revert / recovery markers and, under it on the same time
//! axis, lanes of component health (pods Ready, nodes, Ceph health, PGs clean).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs, io,
    path::{Path, PathBuf},
};

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    markdown::{self, rows, threshold_text, verdict_label, with_unit},
    RunDir, ScenarioRecord, Summary,
};
use crate::{
    diag,
    measure::{
        health::{self, LaneSample, LaneState},
        timeline,
        window::WindowSummary,
    },
    verdict::{format_figure, ScenarioStatus, Verdict},
};

pub const HTML_FILE: &str = "report.html";

#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("cannot read timeline {path}")]
    ReadTimeline {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse timeline {path}")]
    ParseTimeline {
        path: PathBuf,
        #[source]
        source: timeline::TimelineError,
    },
    #[error("cannot parse health timeline {path}")]
    ParseHealth {
        path: PathBuf,
        #[source]
        source: health::HealthError,
    },
    #[error("cannot draw the latency chart: {0}")]
    Chart(String),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A vertical line on the chart, e.g. the fault's t0.
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    pub t_s: f64,
    pub label: String,
}

/// One health lane: its changes, in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Lane {
    pub name: String,
    pub samples: Vec<LaneSample>,
}

/// One timeline to draw.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The CSV file's name.
    pub title: String,
    /// `feature:line` of the scenario that wrote it, when known.
    pub scenario: Option<(String, usize)>,
    pub windows: Vec<WindowSummary>,
    pub markers: Vec<Marker>,
    pub lanes: Vec<Lane>,
}

/// Fault and recovery markers from a scenario's measurements: `t0_s`, and
/// `t0_s + detection_s`, `reverted_at_s` and `t0_s + rto_s` when those were measured.
pub fn markers(measurements: &BTreeMap<String, f64>) -> Vec<Marker> {
    let Some(&t0) = measurements.get("t0_s") else {
        return Vec::new();
    };
    let mut out = vec![Marker {
        t_s: t0,
        label: "fault (t0)".into(),
    }];
    if let Some(d) = measurements.get("detection_s") {
        out.push(Marker {
            t_s: t0 + d,
            label: "detected".into(),
        });
    }
    if let Some(r) = measurements.get("reverted_at_s") {
        out.push(Marker {
            t_s: *r,
            label: "reverted".into(),
        });
    }
    if let Some(rto) = measurements.get("rto_s") {
        out.push(Marker {
            t_s: t0 + rto,
            label: "recovered (t0 + rto)".into(),
        });
    }
    out
}

/// Samples grouped into lanes, in first-seen order, each sorted by time.
pub fn lanes(samples: Vec<LaneSample>) -> Vec<Lane> {
    let mut out: Vec<Lane> = Vec::new();
    for s in samples {
        match out.iter_mut().find(|l| l.name == s.lane) {
            Some(l) => l.samples.push(s),
            None => out.push(Lane {
                name: s.lane.clone(),
                samples: vec![s],
            }),
        }
    }
    for l in &mut out {
        l.samples.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    }
    // The same order in every chart: workloads, nodes, then storage.
    let rank = |name: &str| match name {
        n if n.starts_with("pods ") => 0,
        health::LANE_NODES => 1,
        health::LANE_CEPH => 2,
        health::LANE_PGS => 3,
        _ => 4,
    };
    out.sort_by(|a, b| (rank(&a.name), &a.name).cmp(&(rank(&b.name), &b.name)));
    out
}

fn timeline_name(n: usize) -> String {
    if n == 1 {
        timeline::TIMELINE_FILE.to_owned()
    } else {
        format!("timeline-{n}.csv")
    }
}

/// The run folder's timelines (`timeline.csv`, `timeline-2.csv`, ...), each with its
/// health lanes. A scenario that recorded its timeline's name gets its markers on
/// it; for older runs, markers go on `timeline.csv` only when exactly one scenario
/// measured a t0 (which scenario wrote which file is not recorded there, and a wrong
/// marker misleads).
pub fn load_charts(dir: &Path, summary: &Summary) -> (Vec<Chart>, Vec<HtmlError>) {
    let mut charts = Vec::new();
    let mut errors = Vec::new();
    let with_t0: Vec<_> = summary
        .scenarios
        .iter()
        .filter(|s| s.measurements.contains_key("t0_s") && s.timeline.is_none())
        .collect();
    for n in 1..1000 {
        let name = timeline_name(n);
        let path = dir.join(&name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(source) => {
                errors.push(HtmlError::ReadTimeline { path, source });
                continue;
            }
        };
        let windows = match timeline::parse_csv(&text) {
            Ok(w) if w.is_empty() => continue,
            Ok(w) => w,
            Err(source) => {
                errors.push(HtmlError::ParseTimeline { path, source });
                continue;
            }
        };
        let owner: Option<&ScenarioRecord> = summary
            .scenarios
            .iter()
            .find(|s| s.timeline.as_deref() == Some(name.as_str()));
        let markers = match (owner, with_t0.as_slice()) {
            (Some(s), _) => markers(&s.measurements),
            (None, [only]) if n == 1 => markers(&only.measurements),
            _ => Vec::new(),
        };
        let health_name = owner
            .and_then(|s| s.health.clone())
            .unwrap_or_else(|| health::file_for_timeline(&name));
        let health_path = dir.join(&health_name);
        let lanes = match fs::read_to_string(&health_path) {
            Ok(text) => match health::parse_csv(&text) {
                Ok(samples) => lanes(samples),
                Err(source) => {
                    errors.push(HtmlError::ParseHealth {
                        path: health_path,
                        source,
                    });
                    Vec::new()
                }
            },
            Err(_) => Vec::new(),
        };
        charts.push(Chart {
            title: name,
            scenario: owner.map(|s| (s.feature.clone(), s.line)),
            windows,
            markers,
            lanes,
        });
    }
    (charts, errors)
}

/// Text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Picks one percentile (in µs) from a window.
type Pick = fn(&WindowSummary) -> u64;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 380;
/// Left label area: wide enough for lane names such as `PGs active+clean`.
const LEFT: u32 = 130;
const RIGHT: u32 = 60;
const LANE_ROW: u32 = 26;
/// Light fills for alternating phases, so neighbouring phases stay distinguishable.
const PHASE_FILLS: [RGBColor; 2] = [RGBColor(232, 240, 254), RGBColor(254, 243, 224)];
const GREY_TEXT: RGBColor = RGBColor(89, 99, 110);

/// A lane state's colour; the same as the page's legend.
pub fn lane_color(s: LaneState) -> RGBColor {
    match s {
        LaneState::Ok => RGBColor(45, 164, 78),
        LaneState::Warn => RGBColor(212, 167, 44),
        LaneState::Bad => RGBColor(207, 34, 46),
        LaneState::Unknown => RGBColor(175, 184, 193),
    }
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// A window's figures are drawn at its middle: at its start they would seem to
/// happen up to a window early (before the fault that caused them).
fn mid(w: &WindowSummary) -> f64 {
    w.start_s + w.len_s / 2.0
}

/// The chart as an SVG fragment: p50/p99/p99.9 on the left axis, error rate on the
/// right, phases shaded, markers as labelled vertical lines; below, one row per health
/// lane over the same x axis (ratio lanes fill their row to the ratio).
pub fn chart_svg(chart: &Chart) -> Result<String, HtmlError> {
    let err = |e: &dyn std::fmt::Display| HtmlError::Chart(e.to_string());
    let ws = &chart.windows;
    let (Some(first), Some(last)) = (ws.first(), ws.last()) else {
        return Ok(String::new());
    };
    let x0 = first.start_s;
    let x1 = chart
        .markers
        .iter()
        .map(|m| m.t_s)
        .fold(last.end_s(), f64::max)
        .max(x0 + 1.0);
    let ms = |us: u64| us as f64 / 1000.0;
    let y_max = ws.iter().map(|w| ms(w.p999_us)).fold(1.0, f64::max) * 1.15;
    let err_max = ws
        .iter()
        .map(|w| w.error_rate_pct())
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max)
        .min(100.0)
        * 1.1;
    let n_lanes = chart.lanes.len() as u32;
    let lanes_h = if n_lanes == 0 {
        0
    } else {
        n_lanes * LANE_ROW + 44
    };

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT + lanes_h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (upper, lower) = root.split_vertically(HEIGHT);
        let mut cc = ChartBuilder::on(&upper)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(LEFT)
            .right_y_label_area_size(RIGHT)
            .build_cartesian_2d(x0..x1, 0.0..y_max)
            .map_err(|e| err(&e))?
            .set_secondary_coord(x0..x1, 0.0..err_max);

        // Phases first, so lines draw over them.
        let mut bands: Vec<(f64, f64, &str)> = Vec::new();
        for w in ws {
            match bands.last_mut() {
                Some(b) if b.2 == &*w.phase => b.1 = w.end_s(),
                _ => bands.push((w.start_s, w.end_s(), &w.phase)),
            }
        }
        if bands.iter().any(|b| !b.2.is_empty()) {
            cc.draw_series(bands.iter().enumerate().map(|(i, b)| {
                Rectangle::new([(b.0, 0.0), (b.1, y_max)], PHASE_FILLS[i % 2].filled())
            }))
            .map_err(|e| err(&e))?;
            cc.draw_series(bands.iter().map(|b| {
                Text::new(
                    b.2.to_owned(),
                    (b.0, y_max),
                    ("sans-serif", 12).into_font().color(&GREY_TEXT),
                )
            }))
            .map_err(|e| err(&e))?;
        }

        cc.configure_mesh()
            .x_desc("time since load start (s)")
            .y_desc("latency (ms)")
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(|e| err(&e))?;
        cc.configure_secondary_axes()
            .y_desc("errors (%)")
            .draw()
            .map_err(|e| err(&e))?;

        let lines: [(&str, RGBColor, Pick); 3] = [
            ("p50", RGBColor(46, 125, 50), |w| w.p50_us),
            ("p99", RGBColor(21, 101, 192), |w| w.p99_us),
            ("p99.9", RGBColor(106, 27, 154), |w| w.p999_us),
        ];
        for (label, color, pick) in lines {
            cc.draw_series(LineSeries::new(
                ws.iter().map(|w| (mid(w), ms(pick(w)))),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        }
        let red = RGBColor(198, 40, 40);
        cc.draw_secondary_series(LineSeries::new(
            ws.iter().map(|w| {
                let r = w.error_rate_pct();
                (mid(w), if r.is_finite() { r } else { 0.0 })
            }),
            red.stroke_width(1),
        ))
        .map_err(|e| err(&e))?
        .label("errors (%)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], red.stroke_width(1)));

        // Labels alternate in height so close markers stay readable.
        for (i, m) in chart.markers.iter().enumerate() {
            cc.draw_series(std::iter::once(PathElement::new(
                vec![(m.t_s, 0.0), (m.t_s, y_max)],
                BLACK.mix(0.8).stroke_width(1),
            )))
            .map_err(|e| err(&e))?;
            let y = y_max * (0.90 - 0.07 * (i % 3) as f64);
            cc.draw_series(std::iter::once(Text::new(
                format!(" {}", m.label),
                (m.t_s, y),
                ("sans-serif", 12).into_font(),
            )))
            .map_err(|e| err(&e))?;
        }

        cc.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(|e| err(&e))?;

        if n_lanes > 0 {
            draw_lanes(&lower, chart, x0, x1).map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    // Inline SVG in HTML5 needs no namespace, and dropping it keeps the page free of
    // URLs (so "no http" stays a simple self-containment check).
    Ok(buf.replace(" xmlns=\"http://www.w3.org/2000/svg\"", ""))
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_lanes(
    area: &Area<'_>,
    chart: &Chart,
    x0: f64,
    x1: f64,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let n = chart.lanes.len();
    let mut cc = ChartBuilder::on(area)
        .margin_left(12)
        .margin_right(12)
        .margin_bottom(4)
        .x_label_area_size(30)
        .y_label_area_size(LEFT)
        .right_y_label_area_size(RIGHT)
        .build_cartesian_2d(x0..x1, 0.0..n as f64)?;
    cc.configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    for (i, lane) in chart.lanes.iter().enumerate() {
        // Top lane first.
        let row = (n - 1 - i) as f64;
        let (lo, hi) = (row + 0.12, row + 0.88);
        cc.draw_series(std::iter::once(Rectangle::new(
            [(x0, lo), (x1, hi)],
            RGBColor(246, 248, 250).filled(),
        )))?;
        for (k, s) in lane.samples.iter().enumerate() {
            let from = s.t_s.max(x0);
            let to = lane.samples.get(k + 1).map_or(x1, |next| next.t_s).min(x1);
            if to <= from {
                continue;
            }
            let color = lane_color(s.state);
            // A ratio lane fills its row to the ratio (never to nothing: a sliver
            // of colour still says which state it is).
            let top = match s.value {
                Some(v) => lo + (hi - lo) * v.clamp(0.06, 1.0),
                None => hi,
            };
            cc.draw_series(std::iter::once(Rectangle::new(
                [(from, lo), (to, top)],
                color.filled(),
            )))?;
        }
        for m in &chart.markers {
            cc.draw_series(std::iter::once(PathElement::new(
                vec![(m.t_s, 0.0), (m.t_s, n as f64)],
                BLACK.mix(0.5).stroke_width(1),
            )))?;
        }
    }
    // Lane names in the left label area, right-aligned against the plot. The plot's
    // pixel range is the backend's; text on `area` is relative to its corner.
    let (xr, yr) = cc.plotting_area().get_pixel_range();
    let (bx, by) = area.get_base_pixel();
    let (xr, yr) = (xr.start - bx..xr.end - bx, yr.start - by..yr.end - by);
    let row_px = (yr.end - yr.start) as f64 / n as f64;
    let style = ("sans-serif", 13)
        .into_font()
        .color(&RGBColor(31, 35, 40))
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, lane) in chart.lanes.iter().enumerate() {
        let y = yr.start + (row_px * (i as f64 + 0.5)).round() as i32;
        area.draw(&Text::new(
            lane.name.clone(),
            (xr.start - 8, y),
            style.clone(),
        ))?;
    }
    Ok(())
}

const CSS: &str = "
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--go:#1a7f37;--nogo:#cf222e;
--err:#8250df;--abort:#9a6700}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;
margin:0;color:var(--fg);background:#fff;line-height:1.45}
main{max-width:1080px;margin:0 auto;padding:1.5rem 1rem 3rem}
header.top{display:flex;gap:1.5rem;align-items:center;flex-wrap:wrap;padding:1.2rem 1.4rem;
border:1px solid var(--line);border-radius:.75rem;background:var(--soft)}
header.top h1{font-size:1.05rem;font-weight:600;margin:0;color:var(--muted)}
header.top .run{font-size:1.35rem;font-weight:600;margin:.1rem 0 0}
.verdict{font-size:3.2rem;font-weight:800;padding:.2rem 1.4rem;border-radius:.6rem;color:#fff;
letter-spacing:.04em;line-height:1.2}
.v-go{background:var(--go)}.v-no-go{background:var(--nogo)}.v-error{background:var(--err)}
.v-aborted{background:var(--abort)}
dl.meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:.6rem 1.2rem;
margin:1rem 0 0;padding:0}
dl.meta div{min-width:0}
dl.meta dt{color:var(--muted);font-size:.75rem;text-transform:uppercase;letter-spacing:.05em}
dl.meta dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9rem;
overflow-wrap:anywhere}
.cards{display:flex;gap:.8rem;flex-wrap:wrap;margin:1.2rem 0}
.card{flex:1 1 150px;border:1px solid var(--line);border-radius:.6rem;padding:.7rem 1rem}
.card .n{font-size:1.6rem;font-weight:700}.card .l{color:var(--muted);font-size:.85rem}
.card.bad .n{color:var(--nogo)}.card.good .n{color:var(--go)}
ul.reasons{color:var(--nogo);margin:.5rem 0 0;padding-left:1.2rem}
h2{font-size:1.15rem;margin:2.2rem 0 .7rem;padding-bottom:.3rem;border-bottom:1px solid var(--line)}
h3{font-size:1rem;margin:1.6rem 0 .3rem;display:flex;gap:.6rem;align-items:center;flex-wrap:wrap}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{border-bottom:1px solid var(--line);padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.loc,.loc{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.8rem;color:var(--muted)}
.pass{color:var(--go);font-weight:600}.fail{color:var(--nogo);font-weight:700}
.advisory{color:var(--abort)}
tr.failed{background:#ffebe9}
.badge{font-size:.72rem;font-weight:700;padding:.1rem .5rem;border-radius:1rem;color:#fff;
text-transform:uppercase;letter-spacing:.04em}
.b-passed{background:var(--go)}.b-failed{background:var(--nogo)}.b-skipped{background:var(--muted)}
.figs{display:flex;gap:.5rem 1.4rem;flex-wrap:wrap;font-size:.85rem;color:var(--muted);margin:.2rem 0 .4rem}
.figs b{color:var(--fg);font-variant-numeric:tabular-nums}
figure{margin:.6rem 0 1.4rem;border:1px solid var(--line);border-radius:.6rem;padding:.6rem}
figcaption{color:var(--muted);font-size:.82rem;margin-top:.3rem}
.legend span{display:inline-block;width:.8rem;height:.8rem;border-radius:.15rem;
vertical-align:-.1rem;margin:0 .25rem 0 .8rem}
svg{max-width:100%;height:auto;display:block}
.msg{font-size:.85rem;color:var(--nogo);margin:.2rem 0}
.note{color:var(--muted);font-size:.85rem}
";

/// The key figures shown beside a scenario's chart, when measured.
const KEY_FIGURES: [(&str, &str, &str); 7] = [
    ("rto_s", "RTO", "s"),
    ("detection_s", "detection", "s"),
    ("p99_during_ms", "p99 while degraded", "ms"),
    ("error_rate_during_pct", "errors while degraded", "%"),
    ("steady_p99_ms", "p99 in steady state", "ms"),
    ("achieved_rate", "load", "req/s"),
    ("requests_sent", "requests", ""),
];

fn status_word(s: ScenarioStatus) -> &'static str {
    match s {
        ScenarioStatus::Passed => "passed",
        ScenarioStatus::Failed => "failed",
        ScenarioStatus::Skipped => "skipped",
    }
}

fn chart_figure(h: &mut String, c: &Chart, notes: &mut Vec<String>) {
    match chart_svg(c) {
        Ok(svg) => {
            let _ = write!(
                h,
                "<figure>{svg}<figcaption>{}: p50, p99 and p99.9 latency (left axis) and error \
                 rate (right axis) per window; vertical lines mark the fault, its detection, \
                 revert and recovery.",
                escape(&c.title)
            );
            if !c.lanes.is_empty() {
                h.push_str(" Lanes: component health on the same time axis (ratio lanes fill to the Ready or clean ratio).<span class=\"legend\">");
                for (s, word) in [
                    (LaneState::Ok, "ok"),
                    (LaneState::Warn, "degraded"),
                    (LaneState::Bad, "down"),
                    (LaneState::Unknown, "unknown"),
                ] {
                    let _ = write!(
                        h,
                        "<span style=\"background:{}\"></span>{word}",
                        hex(lane_color(s))
                    );
                }
                h.push_str("</span>");
            }
            h.push_str("</figcaption></figure>\n");
        }
        Err(e) => notes.push(format!("{}: {}", c.title, diag::one_line(&e))),
    }
}

/// The whole page. `charts` come from [`load_charts`]; `notes` are shown as-is
/// (escaped), e.g. why a timeline could not be drawn.
pub fn render(summary: &Summary, charts: &[Chart], notes: &[String]) -> String {
    let mut h = String::new();
    let v = summary.verdict;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>stormdrill {} — {}</title><style>{CSS}</style></head><body><main>\n",
        escape(verdict_label(v)),
        escape(&summary.run_id)
    );

    let duration = (summary.finished - summary.started).num_milliseconds() as f64 / 1000.0;
    let _ = writeln!(
        h,
        "<header class=\"top\"><div class=\"verdict v-{}\">{}</div><div><h1>stormdrill run report</h1>\
         <div class=\"run\">{} on {}</div></div></header>",
        v.as_str(),
        verdict_label(v),
        escape(&summary.run_id),
        escape(&summary.target),
    );
    let harness = summary
        .harness
        .clone()
        .unwrap_or_else(|| format!("stormdrill {} (not recorded)", env!("CARGO_PKG_VERSION")));
    let meta = [
        ("target", summary.target.clone()),
        (
            "profile",
            summary.profile.clone().unwrap_or_else(|| "none".into()),
        ),
        ("seed", summary.seed.to_string()),
        ("run id", summary.run_id.clone()),
        (
            "started",
            summary.started.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ),
        ("duration", format!("{} s", format_figure(duration))),
        ("harness", harness),
    ];
    h.push_str("<dl class=\"meta\">");
    for (k, val) in meta {
        let _ = write!(
            h,
            "<div><dt>{}</dt><dd>{}</dd></div>",
            escape(k),
            escape(&val)
        );
    }
    h.push_str("</dl>\n");

    let all = rows(summary);
    let failed = all.iter().filter(|r| r.failed()).count();
    let count = |st: ScenarioStatus| summary.scenarios.iter().filter(|s| s.status == st).count();
    let (passed_s, failed_s, skipped_s) = (
        count(ScenarioStatus::Passed),
        count(ScenarioStatus::Failed),
        count(ScenarioStatus::Skipped),
    );
    let _ = writeln!(
        h,
        "<div class=\"cards\">\
         <div class=\"card good\"><div class=\"n\">{passed_s}</div><div class=\"l\">scenarios passed</div></div>\
         <div class=\"card{}\"><div class=\"n\">{}</div><div class=\"l\">scenarios failed or skipped</div></div>\
         <div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">criteria judged</div></div>\
         <div class=\"card{}\"><div class=\"n\">{failed}</div><div class=\"l\">gating criteria failed</div></div>\
         </div>",
        if failed_s + skipped_s > 0 { " bad" } else { "" },
        failed_s + skipped_s,
        all.len(),
        if failed > 0 { " bad" } else { "" },
    );

    if let Some(e) = &summary.error {
        let _ = writeln!(h, "<p class=\"fail\">Error: {}</p>", escape(e));
    }
    if v != Verdict::Go && !summary.reasons.is_empty() {
        h.push_str("<ul class=\"reasons\">");
        for r in &summary.reasons {
            let _ = write!(h, "<li>{}</li>", escape(r));
        }
        h.push_str("</ul>\n");
    }

    let _ = writeln!(
        h,
        "<h2>Criteria ({} judged, {failed} failed)</h2>",
        all.len()
    );
    if all.is_empty() {
        h.push_str("<p class=\"note\">No criteria were judged.</p>\n");
    } else {
        h.push_str(
            "<table class=\"criteria\"><thead><tr><th>scenario</th><th>criterion</th><th>figure</th>\
             <th>threshold</th><th>result</th><th>gating</th><th>where</th></tr></thead><tbody>\n",
        );
        // Failed gating criteria first: they are why the run is no-go.
        let ordered = all
            .iter()
            .filter(|r| r.failed())
            .chain(all.iter().filter(|r| !r.failed()));
        for r in ordered {
            let c = r.criterion;
            let (class, result) = match (c.pass, c.gating) {
                (true, _) => ("pass", "pass"),
                (false, true) => ("fail", "FAIL"),
                (false, false) => ("advisory", "fail (advisory)"),
            };
            let _ = writeln!(
                h,
                "<tr{}><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
                 <td class=\"{class}\">{result}</td><td>{}</td><td class=\"loc\">{}</td></tr>",
                if r.failed() { " class=\"failed\"" } else { "" },
                escape(&r.scenario.name),
                escape(&c.name),
                escape(&with_unit(c.figure, &c.unit)),
                escape(&threshold_text(c)),
                if c.gating { "yes" } else { "no" },
                escape(&r.location()),
            );
        }
        h.push_str("</tbody></table>\n");
    }

    let mut notes = notes.to_vec();
    if !summary.scenarios.is_empty() {
        h.push_str("<h2>Scenarios</h2>\n");
    }
    let mut drawn = vec![false; charts.len()];
    for s in &summary.scenarios {
        let _ = writeln!(
            h,
            "<h3><span class=\"badge b-{0}\">{0}</span>{1}<span class=\"loc\">{2}:{3}</span></h3>",
            status_word(s.status),
            escape(&s.name),
            escape(&s.feature),
            s.line
        );
        if let Some(m) = &s.message {
            let _ = writeln!(h, "<p class=\"msg\">{}</p>", escape(m));
        }
        let figs: Vec<String> = KEY_FIGURES
            .iter()
            .filter_map(|(key, label, unit)| {
                s.measurements
                    .get(*key)
                    .map(|v| format!("{label} <b>{}</b>", escape(&with_unit(*v, unit))))
            })
            .collect();
        if !figs.is_empty() {
            let _ = writeln!(h, "<div class=\"figs\">{}</div>", figs.join(" "));
        }
        for (i, c) in charts.iter().enumerate() {
            if c.scenario.as_ref() == Some(&(s.feature.clone(), s.line)) {
                drawn[i] = true;
                chart_figure(&mut h, c, &mut notes);
            }
        }
    }
    let rest: Vec<&Chart> = charts
        .iter()
        .zip(&drawn)
        .filter(|(_, d)| !**d)
        .map(|(c, _)| c)
        .collect();
    if !rest.is_empty() {
        h.push_str("<h2>Latency over time</h2>\n");
        for c in rest {
            chart_figure(&mut h, c, &mut notes);
        }
    }
    for n in &notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(n));
    }
    h.push_str("</main></body></html>\n");
    h
}

pub fn write(run_dir: &RunDir, summary: &Summary) -> Result<PathBuf, HtmlError> {
    let (charts, errors) = load_charts(run_dir.path(), summary);
    let notes: Vec<String> = errors.iter().map(|e| diag::one_line(e)).collect();
    let path = run_dir.path().join(HTML_FILE);
    fs::write(&path, render(summary, &charts, &notes)).map_err(|source| HtmlError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Writes report.html, summary.md and metrics.prom. They are conveniences beside
/// summary.json, so a failure is logged and never changes the run's outcome.
pub fn write_readable(run_dir: &RunDir, summary: &Summary) {
    if let Err(e) = write(run_dir, summary) {
        tracing::warn!(error = %diag::one_line(&e), "cannot write {HTML_FILE}");
    }
    if let Err(e) = markdown::write(run_dir, summary) {
        tracing::warn!(error = %diag::one_line(&e), "cannot write {}", markdown::MARKDOWN_FILE);
    }
    if let Err(e) = super::prom::write(run_dir, summary) {
        tracing::warn!(error = %diag::one_line(&e), "cannot write {}", super::prom::METRICS_FILE);
    }
    match super::junit::write(&run_dir.junit(), summary) {
        Ok(()) => {}
        // A run that failed before its features ran has no junit.xml.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(error = %e, "cannot add the criteria to {}", super::JUNIT_FILE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::markdown::tests::sample;

    const CSV: &str = "t_s,wall_time,rate_sent,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,ok,\
err_4xx,err_429,err_5xx,timeouts,conn_errors,lag_p99_ms,phase
0.000,2026-11-25T23:28:00.000Z,100.0,5.000,8.000,12.000,20.000,25.000,100,0,0,0,0,0,0.100,baseline
1.000,2026-11-25T23:28:01.000Z,100.0,5.000,9.000,15.000,22.000,30.000,100,0,0,0,0,0,0.100,baseline
2.000,2026-11-25T23:28:02.000Z,100.0,50.000,90.000,400.000,800.000,900.000,60,0,0,30,10,0,0.100,fault
3.000,2026-11-25T23:28:03.000Z,100.0,6.000,9.000,14.000,21.000,28.000,100,0,0,0,0,0,0.100,recovery
";

    const HEALTH: &str = "t_s,wall_time,lane,state,value,detail
0.010,2026-11-25T23:28:00.010Z,pods openalex,ok,1.0000,3/3 Ready
0.020,2026-11-25T23:28:00.020Z,Ceph health,ok,,HEALTH_OK
2.100,2026-11-25T23:28:02.100Z,pods openalex,warn,0.6667,\"2/3 Ready; not Ready: openalex/fastapi-1 (Pending, x)\"
2.500,2026-11-25T23:28:02.500Z,Ceph health,warn,,HEALTH_WARN: OSD_DOWN
3.200,2026-11-25T23:28:03.200Z,pods openalex,ok,1.0000,3/3 Ready
";

    fn chart() -> Chart {
        Chart {
            title: "timeline.csv".into(),
            scenario: None,
            windows: timeline::parse_csv(CSV).unwrap(),
            markers: markers(&sample().scenarios[0].measurements),
            lanes: Vec::new(),
        }
    }

    #[test]
    fn verdict_criteria_and_escaping() {
        let html = render(&sample(), &[], &[]);
        assert!(html.contains("<div class=\"verdict v-no-go\">NO-GO</div>"));
        assert!(html.contains("p99&lt;x&gt;|y"), "criterion name escaped");
        assert!(html.contains("api survives &lt;node&gt; loss"));
        assert!(!html.contains("<node>") && !html.contains("p99<x>"));
        assert!(html.contains("<td class=\"fail\">FAIL</td>"));
        assert!(html.contains("<td class=\"pass\">pass</td>"));
        assert!(html.contains("features/x.feature:3"));
        assert!(html.contains("&lt;= 500 ms (profile api.p99_ms)"));
        // The failed row comes first.
        assert!(html.find("FAIL").unwrap() < html.find(">pass<").unwrap());
        assert!(!html.contains("<svg"), "no timeline, no chart");
    }

    #[test]
    fn chart_with_markers_and_phases() {
        assert_eq!(
            chart().markers,
            vec![
                Marker {
                    t_s: 2.0,
                    label: "fault (t0)".into()
                },
                Marker {
                    t_s: 5.0,
                    label: "recovered (t0 + rto)".into()
                },
            ]
        );
        let html = render(&sample(), &[chart()], &["a <note>".into()]);
        assert!(html.contains("<svg"), "chart drawn");
        for text in [
            "p99.9",
            "errors (%)",
            "fault (t0)",
            "recovered (t0 + rto)",
            "baseline",
        ] {
            assert!(html.contains(text), "chart lacks {text}");
        }
        assert!(html.contains("a &lt;note&gt;"));
    }

    #[test]
    fn self_contained() {
        let html = render(&sample(), &[chart()], &[]);
        let lower = html.to_ascii_lowercase();
        for needle in ["http://", "https://", "<script", "<link", "@import", "url("] {
            assert!(!lower.contains(needle), "report.html references {needle}");
        }
    }

    #[test]
    fn writes_files_from_the_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path(), "r1").unwrap();
        run.create().unwrap();
        fs::write(run.path().join(timeline::TIMELINE_FILE), CSV).unwrap();
        fs::write(run.path().join("timeline-2.csv"), "garbage\n1,2\n").unwrap();
        write_readable(&run, &sample());
        let html = fs::read_to_string(run.path().join(HTML_FILE)).unwrap();
        assert_eq!(html.matches("<svg").count(), 1);
        assert!(
            html.contains("fault (t0)"),
            "single t0 scenario marks timeline.csv"
        );
        assert!(html.contains("cannot parse timeline"), "bad timeline noted");
        let md = fs::read_to_string(run.path().join(markdown::MARKDOWN_FILE)).unwrap();
        assert!(md.contains("### Failed criteria (1)"));
    }

    #[test]
    fn lanes_are_drawn_under_the_chart_of_their_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path(), "r1").unwrap();
        run.create().unwrap();
        // Two scenarios, the second one's load wrote timeline-2.csv: its markers go
        // there, not on timeline.csv.
        let mut summary = sample();
        let mut first = summary.scenarios[0].clone();
        first.name = "no fault here".into();
        first.line = 1;
        first.measurements.clear();
        first.criteria.clear();
        first.timeline = Some("timeline.csv".into());
        summary.scenarios[0].timeline = Some("timeline-2.csv".into());
        summary.scenarios[0]
            .measurements
            .insert("reverted_at_s".into(), 3.0);
        summary.scenarios.insert(0, first);
        fs::write(run.path().join("timeline.csv"), CSV).unwrap();
        fs::write(run.path().join("timeline-2.csv"), CSV).unwrap();
        fs::write(run.path().join("health-2.csv"), HEALTH).unwrap();
        let (charts, errors) = load_charts(run.path(), &summary);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(charts.len(), 2);
        assert!(charts[0].markers.is_empty() && charts[0].lanes.is_empty());
        assert_eq!(
            charts[1].scenario,
            Some(("features/x.feature".to_owned(), 3))
        );
        let labels: Vec<&str> = charts[1].markers.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["fault (t0)", "reverted", "recovered (t0 + rto)"]);
        let names: Vec<&str> = charts[1].lanes.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["pods openalex", "Ceph health"]);
        assert_eq!(charts[1].lanes[0].samples.len(), 3);

        let svg = chart_svg(&charts[1]).unwrap();
        for text in ["pods openalex", "Ceph health", "reverted"] {
            assert!(svg.contains(text), "svg lacks {text}");
        }
        // The degraded pods segment is drawn in the warn colour.
        let lower = svg.to_ascii_lowercase();
        assert!(
            lower.contains(&hex(lane_color(LaneState::Warn))),
            "no warn segment"
        );
        assert!(
            !lower.contains(&hex(lane_color(LaneState::Bad))),
            "nothing was down"
        );
        let html = render(&summary, &charts, &[]);
        // Each chart sits in its scenario's section.
        let second = html
            .find("api survives &lt;node&gt; loss</h3>")
            .unwrap_or_else(|| {
                html.find("api survives &lt;node&gt; loss<span")
                    .expect("scenario heading")
            });
        assert!(html[second..].contains("timeline-2.csv"));
        assert!(
            !html.contains("<h2>Latency over time</h2>"),
            "no orphan charts"
        );
        assert!(html.contains("<dt>profile</dt><dd>twin</dd>"));
        assert!(html.contains("stormdrill 0.1.0 (abc1234)"));
    }
}
