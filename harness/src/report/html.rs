//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, nothing
//! fetched) to attach to a ticket or open from a CI artifact: run metadata, the
//! verdict, the criteria table and a latency chart per timeline.

use std::{
    fmt::Write as _,
    fs, io,
    path::{Path, PathBuf},
};

use plotters::prelude::*;

use super::{
    markdown::{self, rows, threshold_text, verdict_label, with_unit},
    RunDir, Summary,
};
use crate::{
    diag,
    measure::{timeline, window::WindowSummary},
    verdict::{format_figure, Verdict},
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

/// One timeline to draw.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The CSV file's name, shown as the chart's caption.
    pub title: String,
    pub windows: Vec<WindowSummary>,
    pub markers: Vec<Marker>,
}

/// Fault and recovery markers from a scenario's measurements: `t0_s`, and
/// `t0_s + detection_s` / `t0_s + rto_s` when those were measured.
pub fn markers(measurements: &std::collections::BTreeMap<String, f64>) -> Vec<Marker> {
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
    if let Some(rto) = measurements.get("rto_s") {
        out.push(Marker {
            t_s: t0 + rto,
            label: "recovered (t0 + rto)".into(),
        });
    }
    out
}

/// The run folder's timelines (`timeline.csv`, `timeline-2.csv`, ...). Fault markers
/// go on `timeline.csv` only when exactly one scenario measured a t0: with several,
/// which scenario wrote which file is not recorded, and a wrong marker misleads.
pub fn load_charts(dir: &Path, summary: &Summary) -> (Vec<Chart>, Vec<HtmlError>) {
    let mut charts = Vec::new();
    let mut errors = Vec::new();
    let with_t0: Vec<_> = summary
        .scenarios
        .iter()
        .filter(|s| s.measurements.contains_key("t0_s"))
        .collect();
    for n in 1..1000 {
        let name = if n == 1 {
            timeline::TIMELINE_FILE.to_owned()
        } else {
            format!("timeline-{n}.csv")
        };
        let path = dir.join(&name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(source) => {
                errors.push(HtmlError::ReadTimeline { path, source });
                continue;
            }
        };
        match timeline::parse_csv(&text) {
            Ok(windows) if windows.is_empty() => {}
            Ok(windows) => charts.push(Chart {
                markers: match with_t0.as_slice() {
                    [only] if n == 1 => markers(&only.measurements),
                    _ => Vec::new(),
                },
                title: name,
                windows,
            }),
            Err(source) => errors.push(HtmlError::ParseTimeline { path, source }),
        }
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

const WIDTH: u32 = 960;
const HEIGHT: u32 = 380;
/// Light fills for alternating phases, so neighbouring phases stay distinguishable.
const PHASE_FILLS: [RGBColor; 2] = [RGBColor(232, 240, 254), RGBColor(254, 243, 224)];

/// The latency chart as an SVG fragment: p50/p99/p99.9 on the left axis, error rate on
/// the right, phases shaded, markers as labelled vertical lines.
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
    let y_max = ws.iter().map(|w| ms(w.p999_us)).fold(1.0, f64::max) * 1.1;
    let err_max = ws
        .iter()
        .map(|w| w.error_rate_pct())
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max)
        .min(100.0)
        * 1.1;

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut cc = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .right_y_label_area_size(56)
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
                    ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90)),
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
                ws.iter().map(|w| (w.start_s, ms(pick(w)))),
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
                (w.start_s, if r.is_finite() { r } else { 0.0 })
            }),
            red.stroke_width(1),
        ))
        .map_err(|e| err(&e))?
        .label("errors (%)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], red.stroke_width(1)));

        for m in &chart.markers {
            cc.draw_series(std::iter::once(PathElement::new(
                vec![(m.t_s, 0.0), (m.t_s, y_max)],
                BLACK.stroke_width(1),
            )))
            .map_err(|e| err(&e))?;
            cc.draw_series(std::iter::once(Text::new(
                m.label.clone(),
                (m.t_s, y_max * 0.93),
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
        root.present().map_err(|e| err(&e))?;
    }
    // Inline SVG in HTML5 needs no namespace, and dropping it keeps the page free of
    // URLs (so "no http" stays a simple self-containment check).
    Ok(buf.replace(" xmlns=\"http://www.w3.org/2000/svg\"", ""))
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;
margin:2rem auto;max-width:1100px;padding:0 1rem;color:#1f2328;background:#fff}
h1{font-size:1.3rem;font-weight:600;margin:0 0 1rem}
h2{font-size:1.1rem;margin:2rem 0 .6rem}
.verdict{display:inline-block;font-size:3rem;font-weight:700;padding:.3rem 1.4rem;
border-radius:.5rem;color:#fff;letter-spacing:.05em}
.v-go{background:#1a7f37}.v-no-go{background:#cf222e}.v-error{background:#8250df}
.v-aborted{background:#9a6700}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:1rem 0}
dl.meta dt{color:#59636e}dl.meta dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
ul.reasons{color:#cf222e}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #d1d9e0;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.loc{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.8rem;color:#59636e}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:700}
.advisory{color:#9a6700}
tr.failed{background:#ffebe9}
figure{margin:1rem 0}figcaption{color:#59636e;font-size:.85rem}
svg{max-width:100%;height:auto}
.note{color:#59636e;font-size:.85rem}
";

/// The whole page. `charts` come from [`load_charts`]; `notes` are shown as-is
/// (escaped), e.g. why a timeline could not be drawn.
pub fn render(summary: &Summary, charts: &[Chart], notes: &[String]) -> String {
    let mut h = String::new();
    let v = summary.verdict;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>stormdrill {} — {}</title><style>{CSS}</style></head><body>\n",
        escape(verdict_label(v)),
        escape(&summary.run_id)
    );
    h.push_str("<h1>stormdrill run report</h1>\n");
    let _ = writeln!(
        h,
        "<div class=\"verdict v-{}\">{}</div>",
        v.as_str(),
        verdict_label(v)
    );

    let duration = (summary.finished - summary.started).num_milliseconds() as f64 / 1000.0;
    let mut meta = vec![
        ("target", summary.target.clone()),
        ("run id", summary.run_id.clone()),
        ("seed", summary.seed.to_string()),
        (
            "started",
            summary.started.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ),
        (
            "finished",
            summary.finished.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ),
        ("duration", format!("{} s", format_figure(duration))),
        (
            "harness",
            format!("stormdrill {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    // Set by CI at build time when wanted; a build script just for this is not worth it.
    if let Some(rev) = option_env!("STORMDRILL_GIT_REV") {
        meta.push(("revision", rev.to_owned()));
    }
    h.push_str("<dl class=\"meta\">");
    for (k, val) in meta {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&val));
    }
    h.push_str("</dl>\n");

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

    let all = rows(summary);
    let failed = all.iter().filter(|r| r.failed()).count();
    let _ = writeln!(
        h,
        "<h2>Criteria ({} judged, {failed} failed)</h2>",
        all.len()
    );
    if all.is_empty() {
        h.push_str("<p class=\"note\">No criteria were judged.</p>\n");
    } else {
        h.push_str(
            "<table><thead><tr><th>scenario</th><th>criterion</th><th>figure</th>\
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
    if !charts.is_empty() {
        h.push_str("<h2>Latency over time</h2>\n");
    }
    for c in charts {
        match chart_svg(c) {
            Ok(svg) => {
                let _ = writeln!(
                    h,
                    "<figure>{svg}<figcaption>{}: p50, p99, p99.9 latency (left axis) and \
                     error rate (right axis) per window</figcaption></figure>",
                    escape(&c.title)
                );
            }
            Err(e) => notes.push(format!("{}: {}", c.title, diag::one_line(&e))),
        }
    }
    for n in &notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(n));
    }
    h.push_str("</body></html>\n");
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

/// Writes report.html and summary.md. They are conveniences beside summary.json, so a
/// failure is logged and never changes the run's outcome.
pub fn write_readable(run_dir: &RunDir, summary: &Summary) {
    if let Err(e) = write(run_dir, summary) {
        tracing::warn!(error = %diag::one_line(&e), "cannot write {HTML_FILE}");
    }
    if let Err(e) = markdown::write(run_dir, summary) {
        tracing::warn!(error = %diag::one_line(&e), "cannot write {}", markdown::MARKDOWN_FILE);
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

    fn chart() -> Chart {
        Chart {
            title: "timeline.csv".into(),
            windows: timeline::parse_csv(CSV).unwrap(),
            markers: markers(&sample().scenarios[0].measurements),
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
}
