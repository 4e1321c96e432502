//! Puts every criterion into junit.xml. Cucumber's JUnit writer records scenarios and
//! steps; CI tools that read JUnit should see the figures too. Each `<testcase>` of a
//! scenario gets `<properties>` (the convention pytest's `record_property` set, which
//! GitLab, Jenkins and test-report actions read), one `criterion:NAME` per criterion:
//! `PASS|FAIL figure <= threshold (source)[, advisory]`.

use std::path::Path;

use super::{
    markdown::{threshold_text, with_unit},
    ScenarioRecord, Summary,
};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in a start tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

/// The end of the start tag beginning `s` (the `>` outside quotes).
fn tag_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    s.char_indices().find_map(|(i, c)| match c {
        '"' => {
            quoted = !quoted;
            None
        }
        '>' if !quoted => Some(i),
        _ => None,
    })
}

/// Cucumber names a test case `Scenario: NAME: PATH:LINE:COLUMN`.
fn scenario_of<'a>(name: &str, scenarios: &'a [ScenarioRecord]) -> Option<&'a ScenarioRecord> {
    let mut parts = name.rsplitn(3, ':');
    let (_column, line, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let line: usize = line.parse().ok()?;
    scenarios.iter().find(|s| {
        s.line == line
            && rest.ends_with(&s.feature)
            && rest
                .strip_prefix("Scenario: ")
                .or_else(|| rest.strip_prefix("Scenario Outline: "))
                .is_some_and(|r| r.starts_with(&format!("{}: ", s.name)))
    })
}

fn properties(s: &ScenarioRecord) -> String {
    let mut out = String::from("<properties>");
    for c in &s.criteria {
        let value = format!(
            "{} {} {}{}",
            if c.pass { "PASS" } else { "FAIL" },
            with_unit(c.figure, &c.unit),
            threshold_text(c),
            if c.gating { "" } else { ", advisory" }
        );
        out.push_str(&format!(
            "<property name=\"criterion:{}\" value=\"{}\"/>",
            escape(&c.name),
            escape(&value)
        ));
    }
    out.push_str("</properties>");
    out
}

/// `xml` with the criteria of each matching scenario inside its `<testcase>`.
pub fn annotate(xml: &str, summary: &Summary) -> String {
    let mut out = String::with_capacity(xml.len() * 2);
    let mut rest = xml;
    while let Some(i) = rest.find("<testcase ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tag_end(tail) else {
            break;
        };
        let tag = &tail[..=end];
        let scenario = attr(tag, "name").and_then(|n| scenario_of(&n, &summary.scenarios));
        match scenario {
            Some(s) if !s.criteria.is_empty() => {
                if let Some(open) = tag.strip_suffix("/>") {
                    out.push_str(&format!("{open}>{}</testcase>", properties(s)));
                } else {
                    out.push_str(tag);
                    out.push_str(&properties(s));
                }
            }
            _ => out.push_str(tag),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Rewrites `path` with the criteria; an unreadable file is left as it is (a run
/// stopped by a signal may not have written it).
pub fn write(path: &Path, summary: &Summary) -> std::io::Result<()> {
    let xml = std::fs::read_to_string(path)?;
    std::fs::write(path, annotate(&xml, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::markdown::tests::sample;

    #[test]
    fn criteria_go_into_their_test_case() {
        let summary = sample();
        let xml = r#"<?xml version="1.0"?><testsuites><testsuite name="x"><testcase name="Scenario: api survives &lt;node&gt; loss: features/x.feature:3:3" time="1"><system-out><![CDATA[ok > fine]]></system-out></testcase><testcase name="Scenario: other: features/x.feature:9:3" time="1"/></testsuite></testsuites>"#;
        let out = annotate(xml, &summary);
        assert!(
            out.contains(r#"<testcase name="Scenario: api survives &lt;node&gt; loss: features/x.feature:3:3" time="1"><properties><property name="criterion:rto_s" value="PASS 3 s &lt;= 30 s"/><property name="criterion:p99&lt;x&gt;|y" value="FAIL 900 ms &lt;= 500 ms (profile api.p99_ms)"/></properties><system-out>"#),
            "{out}"
        );
        // A scenario the summary does not know keeps its test case as it was.
        assert!(
            out.contains(r#"<testcase name="Scenario: other: features/x.feature:9:3" time="1"/>"#)
        );
        assert!(out.ends_with("</testsuite></testsuites>"));
        // Nothing else changes.
        assert_eq!(
            annotate(
                xml,
                &Summary {
                    scenarios: vec![],
                    ..sample()
                }
            ),
            xml
        );
    }
}
