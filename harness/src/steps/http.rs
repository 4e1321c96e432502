//! HTTPS and API checks (phases 1 and 4): the TLS handshake with the API host and
//! its certificate's names, the API answering through Contour, and the rate limit
//! under a bounded burst from one address. The API is found as a client finds it
//! (`--api-url`, else the HTTPProxy and Envoy's load balancer: [`probe::api`]).

use cucumber::then;

use super::checks::{self, judge_yes, CheckError};
use crate::{
    probe::{self, http::Target},
    verdict::{Comparison, Criterion},
    world::World,
};

/// Bursts tried when one spills over a second (a loaded machine).
const BURST_ATTEMPTS: u32 = 3;

async fn api_target(world: &World) -> Result<Target, CheckError> {
    let endpoint = match &world.context().api {
        Some(ep) => ep.clone(),
        None => probe::api::discover(world.client())
            .await?
            .ok_or(CheckError::NoApiEndpoint)?,
    };
    Ok(Target::from_endpoint(&endpoint).await?)
}

#[then(regex = r"^a TLS handshake with the API host succeeds with a certificate for that name$")]
async fn tls_handshake(world: &mut World) -> Result<(), CheckError> {
    let target = api_target(world).await?;
    let host = target.host.clone();
    let h = probe::http::tls_handshake(&target).await?;
    let completed = judge_yes(world, format!("tls_handshake[{host}]"), h.completed);
    // The name is only judged when a certificate was seen.
    let name_ok = match h.name_matches {
        Some(m) => judge_yes(world, format!("tls_certificate_name[{host}]"), m),
        None => true,
    };
    if completed && name_ok {
        if let Some(p) = &h.protocol {
            tracing::debug!("TLS with {host}: {p}");
        }
        return Ok(());
    }
    let mut seen = Vec::new();
    if let Some(e) = &h.error {
        seen.push(format!(
            "the handshake with {}:{} failed: {e}",
            target.addr, target.port
        ));
    }
    if h.name_matches == Some(false) {
        seen.push(if h.presented.is_empty() {
            format!("the certificate is not valid for {host}")
        } else {
            format!(
                "the certificate is for {}, not {host}",
                h.presented.join(", ")
            )
        });
    }
    Err(CheckError::Unmet {
        expected: format!("a TLS handshake with {host} and a certificate for it"),
        seen: seen.join("; "),
    })
}

#[then(regex = r#"^the API answers "(/[^"]*)" with status (\d{3})$"#)]
async fn api_answers(world: &mut World, path: String, status: u16) -> Result<(), CheckError> {
    let target = api_target(world).await?;
    let (got, latency) = probe::http::get(&target, &path).await?;
    world.measure(
        format!("api_latency_ms[{path}]"),
        checks::round3(latency.as_secs_f64() * 1000.0),
    );
    let pass = world.judge(Criterion::new(
        format!("api_status[{path}]"),
        got.as_ref().map_or(f64::NAN, |c| f64::from(*c)),
        Comparison::Equal,
        f64::from(status),
        "",
    ));
    if pass {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("GET {} to answer {status}", target.url(&path)),
        seen: match got {
            Ok(code) => format!("it answered {code}"),
            Err(why) => format!("no answer from {}:{}: {why}", target.addr, target.port),
        },
    })
}

#[then(
    regex = r#"^(\d+) requests to "(/[^"]*)" within one second from one address get (at least one|no) 429$"#
)]
async fn burst_rate_limited(
    world: &mut World,
    n: usize,
    path: String,
    expect: String,
) -> Result<(), CheckError> {
    let target = api_target(world).await?;
    let want_some = expect == "at least one";
    // A burst that spilled into the next second was split between two windows and
    // proves nothing about the limit: try again, a bounded number of times.
    let mut attempts = 0;
    let b = loop {
        attempts += 1;
        let b = probe::http::burst(&target, &path, n).await?;
        if b.one_window || !want_some || b.rate_limited > 0 || attempts >= BURST_ATTEMPTS {
            break b;
        }
    };
    world.measure(
        format!("burst_s[{n}]"),
        checks::round3(b.elapsed.as_secs_f64()),
    );
    world.measure(format!("burst_attempts[{n}]"), f64::from(attempts));
    let (comparison, threshold) = if want_some {
        (Comparison::AtLeast, 1.0)
    } else {
        (Comparison::AtMost, 0.0)
    };
    let pass = world.judge(Criterion::new(
        format!("rate_limited[{n} in 1 s]"),
        b.rate_limited as f64,
        comparison,
        threshold,
        "429s",
    ));
    let summary = format!(
        "{} of {n} got 429, {} succeeded, {} other{} in {:.3}s",
        b.rate_limited,
        b.ok,
        b.other,
        b.first_other
            .as_ref()
            .map_or(String::new(), |o| format!(" (first: {o})")),
        b.elapsed.as_secs_f64()
    );
    if pass {
        tracing::debug!("burst to {}: {summary}", target.host);
        return Ok(());
    }
    let mut seen = summary;
    if want_some && !b.one_window {
        seen.push_str(
            "; the burst spilled into a second wall-clock second, so a limiter counting per \
             second saw it split",
        );
    }
    Err(CheckError::Unmet {
        expected: format!("{n} requests within one second from one address to get {expect} 429"),
        seen,
    })
}
