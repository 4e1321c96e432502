//! `stormdrill bench` part (e): the harness's memory over a long open-loop run (10
//! minutes at 1,000 req/s by default) against the bench's local server, with the
//! timeline streamed to a file as in a real run.
//!
//! Resident memory is sampled from `/proc/self/status` (`VmRSS`) once a second; the
//! peak is the largest sample, and `VmHWM` (the kernel's exact high-water mark, reset
//! through `/proc/self/clear_refs` just before the run) is reported beside it when the
//! reset worked. "Bounded" is judged on the growth after a warm-up (the first minute,
//! or half of a shorter run): the end minus the warm-up sample, and the least-squares
//! slope of the samples after the warm-up.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{LoadConfig, LoadError, LoadRun, Mix};

const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const WARM_UP: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Serialize)]
pub struct MemoryFigure {
    pub target_rate: f64,
    /// Seconds the load actually ran.
    pub duration_s: f64,
    pub sent: u64,
    pub achieved_rate: f64,
    pub errors: u64,
    pub windows: usize,
    /// VmRSS just before the run (the bench's earlier parts included).
    pub rss_before_kb: u64,
    /// Largest VmRSS sample during the run.
    pub peak_rss_kb: u64,
    /// VmHWM after the run, reset just before it; None when the reset failed.
    pub hwm_kb: Option<u64>,
    pub warm_up_s: f64,
    pub rss_after_warm_up_kb: u64,
    pub rss_end_kb: u64,
    /// End minus after warm-up.
    pub growth_kb: i64,
    /// Least-squares trend of the samples after the warm-up.
    pub slope_kb_per_min: f64,
    pub samples: usize,
}

/// `VmRSS` / `VmHWM` style fields of `/proc/self/status`, in kB.
pub fn status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn read_status(field: &str) -> Option<u64> {
    status_kb(&std::fs::read_to_string("/proc/self/status").ok()?, field)
}

/// Least-squares slope of (seconds, kB) points, in kB per minute.
pub fn slope_per_min(points: &[(f64, u64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(x, y) in points {
        num += (x - mx) * (y as f64 - my);
        den += (x - mx) * (x - mx);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den * 60.0
    }
}

/// Runs the load on the calling thread (own current-thread runtime, as the rate runs)
/// while another thread samples memory; blocking.
pub fn run(
    target: http::Uri,
    rate: f64,
    duration: Duration,
    timeline_dir: std::path::PathBuf,
) -> Result<MemoryFigure, LoadError> {
    let rss_before_kb = read_status("VmRSS").unwrap_or(0);
    // "5" resets the peak RSS counter (Linux >= 4.0); not fatal if refused.
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let samples: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let sampler = {
        let (samples, stop) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut next = started;
            while !stop.load(Ordering::Relaxed) {
                if let Some(kb) = read_status("VmRSS") {
                    let t = started.elapsed().as_secs_f64();
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((t, kb));
                }
                next += SAMPLE_EVERY;
                // Short sleeps, so the end of the run is not held up by a whole second.
                while !stop.load(Ordering::Relaxed) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };
    let mut cfg = LoadConfig::open(target, rate);
    cfg.duration = duration;
    cfg.mix = Mix::single("/").expect("a valid path");
    cfg.timeline_dir = Some(timeline_dir);
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Invalid(format!("cannot build a runtime: {e}")))
        .and_then(|rt| rt.block_on(async { LoadRun::start(cfg).await?.wait().await }));
    // One last sample at the very end.
    let end = (started.elapsed().as_secs_f64(), read_status("VmRSS"));
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let report = result?;
    let mut points = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    if let (t, Some(kb)) = end {
        points.push((t, kb));
    }
    let ran = report.elapsed_s;
    let warm_up_s = WARM_UP.as_secs_f64().min(ran / 2.0);
    let after: Vec<(f64, u64)> = points
        .iter()
        .copied()
        .filter(|p| p.0 >= warm_up_s)
        .collect();
    let rss_after_warm_up_kb = after.first().map_or(0, |p| p.1);
    let rss_end_kb = points.last().map_or(0, |p| p.1);
    Ok(MemoryFigure {
        target_rate: rate,
        duration_s: (ran * 10.0).round() / 10.0,
        sent: report.totals.sent,
        achieved_rate: (report.achieved_rate * 10.0).round() / 10.0,
        errors: report.totals.requests_lost,
        windows: report.windows.len(),
        rss_before_kb,
        peak_rss_kb: points.iter().map(|p| p.1).max().unwrap_or(0),
        hwm_kb: hwm_reset.then(|| read_status("VmHWM")).flatten(),
        warm_up_s,
        rss_after_warm_up_kb,
        rss_end_kb,
        growth_kb: rss_end_kb as i64 - rss_after_warm_up_kb as i64,
        slope_kb_per_min: (slope_per_min(&after) * 10.0).round() / 10.0,
        samples: points.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_fields() {
        let text =
            "Name:\tstormdrill\nVmPeak:\t  900000 kB\nVmHWM:\t   41236 kB\nVmRSS:\t   40112 kB\n";
        assert_eq!(status_kb(text, "VmRSS"), Some(40112));
        assert_eq!(status_kb(text, "VmHWM"), Some(41236));
        assert_eq!(status_kb(text, "VmSwap"), None);
        // This process has one.
        assert!(read_status("VmRSS").is_some_and(|kb| kb > 0));
    }

    #[test]
    fn slope_of_flat_and_growing_series() {
        let flat: Vec<(f64, u64)> = (0..60).map(|s| (f64::from(s), 1000)).collect();
        assert_eq!(slope_per_min(&flat), 0.0);
        let growing: Vec<(f64, u64)> = (0..60)
            .map(|s| (f64::from(s), 1000 + 2 * s as u64))
            .collect();
        assert!((slope_per_min(&growing) - 120.0).abs() < 1e-9);
        assert_eq!(slope_per_min(&growing[..1]), 0.0);
    }
}
