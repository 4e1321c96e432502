//! The one definition of a limit as a step writes it: `the profile's KEY` (the number
//! under KEY in the acceptance profile, its unit from the key's suffix) or a number
//! with its unit (`60 seconds`, `500 ms`, `15 days`, `1%`).
//!
//! [`parse`] is the one parser of that text, and [`UNITS`] the one table of unit
//! words; [`super::checks::resolve_limit`] uses them too. Each unit kind a step takes
//! is one cucumber [`Parameter`] here (cucumber expressions name it, e.g.
//! `the backup completes within {long-limit}`), yielding a [`Limit`]:
//!
//! | parameter | type | units |
//! |---|---|---|
//! | `{limit}` | [`DurationLimit`] | ms to hours, or a profile key |
//! | `{long-limit}` | [`LongDurationLimit`] | ms to days, or a profile key |
//! | `{ms-limit}` | [`MsLimit`] | ms, or a profile key |
//! | `{percent-limit}` | [`PercentLimit`] | `N%`, or a profile key |
//! | `{retention-limit}` | [`RetentionLimit`] | hours or days, or a profile key |
//! | `{window-limit}` | [`WindowLimit`] | seconds to hours, or a profile key |
//! | `{duration}` | [`StepDuration`] | ms to hours, inline only |
//! | `{percent}` | [`Percent`] | `N%`, inline only |
//!
//! The derive takes its regex as a literal, and so does a step that stays a regex
//! (one that captures alternatives such as `(down|out)`, has a limit in an optional
//! part, or quotes a name `{string}` would read differently): those repeat a
//! parameter's `REGEX` verbatim, and a unit test fails when a registered step's limit
//! text is not one of them, or when a `REGEX` and [`parse`] disagree on a unit word.

use std::{str::FromStr, time::Duration};

use cucumber::Parameter;

/// How a step names a threshold of the acceptance profile (`the profile's KEY`).
pub const PROFILE_PREFIX: &str = "the profile's ";

/// Every unit word of a duration, with its seconds, shortest first.
pub const UNITS: &[(&str, f64)] = &[
    ("ms", 0.001),
    ("millisecond", 0.001),
    ("milliseconds", 0.001),
    ("s", 1.0),
    ("sec", 1.0),
    ("secs", 1.0),
    ("second", 1.0),
    ("seconds", 1.0),
    ("m", 60.0),
    ("min", 60.0),
    ("mins", 60.0),
    ("minute", 60.0),
    ("minutes", 60.0),
    ("h", 3600.0),
    ("hour", 3600.0),
    ("hours", 3600.0),
    ("d", 86_400.0),
    ("day", 86_400.0),
    ("days", 86_400.0),
];

/// Seconds per unit word of a duration (`ms`, `seconds`, `hours`, `days`...).
pub fn unit_word_seconds(word: &str) -> Option<f64> {
    UNITS.iter().find(|(w, _)| *w == word).map(|(_, s)| *s)
}

/// Which numbers a limit takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Units {
    /// A duration in a unit from `shortest` to `longest` (their seconds).
    Duration { shortest: f64, longest: f64 },
    /// A percentage, `1%` or `1 %`.
    Percent,
    /// A plain number (replicas, requests).
    Count,
}

impl Units {
    /// Every duration unit, ms to days.
    pub const ANY_DURATION: Units = Units::Duration {
        shortest: 0.001,
        longest: 86_400.0,
    };
}

/// A limit as written: a profile key, or a number in its kind's unit (seconds for a
/// duration, percent for a percentage, the number itself for a count).
#[derive(Clone, Debug, PartialEq)]
pub enum Limit {
    /// `the profile's KEY`: the KEY.
    Profile(String),
    Value(f64),
}

/// Reads `text` as a limit taking `units`; the error says why not.
pub fn parse(text: &str, units: Units) -> Result<Limit, String> {
    let t = text.trim();
    if let Some(key) = t.strip_prefix(PROFILE_PREFIX) {
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!("{key:?} is not a profile key"));
        }
        return Ok(Limit::Profile(key.to_owned()));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, word) = t.split_at(split);
    let n: f64 = n.parse().map_err(|_| "not a number".to_owned())?;
    let word = word.trim();
    match (units, word) {
        (Units::Count, "") => Ok(Limit::Value(n)),
        (Units::Count, _) => Err("a count takes no unit".into()),
        (Units::Percent, "%") => Ok(Limit::Value(n)),
        (Units::Percent, _) => Err("a percentage ends with %".into()),
        (Units::Duration { .. }, "") => {
            Err("a duration needs a unit (seconds, hours, days...)".into())
        }
        (Units::Duration { shortest, longest }, w) => match unit_word_seconds(w) {
            Some(s) if (shortest..=longest).contains(&s) => Ok(Limit::Value(n * s)),
            Some(_) => Err(format!("{w:?} is not a unit this step takes")),
            None => Err("unknown unit".into()),
        },
    }
}

fn parse_for(text: &str, units: Units) -> Result<Limit, String> {
    parse(text, units).map_err(|why| format!("cannot read the limit {text:?}: {why}"))
}

/// Implements `FromStr` for a limit parameter taking `$units`.
macro_rules! limit_from_str {
    ($ty:ident, $units:expr) => {
        impl $ty {
            /// The numbers this parameter takes.
            pub const UNITS: Units = $units;
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_for(s, Self::UNITS).map($ty)
            }
        }
    };
}

/// `{limit}`: a duration from ms to hours, or `the profile's KEY`.
#[derive(Clone, Debug, PartialEq, Parameter)]
#[param(
    name = "limit",
    regex = r"the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?)"
)]
pub struct DurationLimit(pub Limit);
limit_from_str!(
    DurationLimit,
    Units::Duration {
        shortest: 0.001,
        longest: 3600.0
    }
);

/// `{long-limit}`: a duration from ms to days, or `the profile's KEY`.
#[derive(Clone, Debug, PartialEq, Parameter)]
#[param(
    name = "long-limit",
    regex = r"the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)"
)]
pub struct LongDurationLimit(pub Limit);
limit_from_str!(LongDurationLimit, Units::ANY_DURATION);

/// `{ms-limit}`: a duration in ms (`500 ms`), or `the profile's KEY`; the value is in
/// seconds like every duration's.
#[derive(Clone, Debug, PartialEq, Parameter)]
#[param(
    name = "ms-limit",
    regex = r"the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?ms"
)]
pub struct MsLimit(pub Limit);
limit_from_str!(
    MsLimit,
    Units::Duration {
        shortest: 0.001,
        longest: 0.001
    }
);

/// `{percent-limit}`: `1%`, `0.5 %`, or `the profile's KEY`; the value in percent.
#[derive(Clone, Debug, PartialEq, Parameter)]
#[param(
    name = "percent-limit",
    regex = r"the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?%"
)]
pub struct PercentLimit(pub Limit);
limit_from_str!(PercentLimit, Units::Percent);

/// `{retention-limit}`: hours or days, or `the profile's KEY`.
#[derive(Clone, Debug, PartialEq, Parameter)]
#[param(
    name = "retention-limit",
    regex = r"the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:h|hours?|d|days?)"
)]
pub struct RetentionLimit(pub Limit);
limit_from_str!(
    RetentionLimit,
    Units::Duration {
        shortest: 3600.0,
        longest: 86_400.0
    }
);

/// `{window-limit}`: a duration from seconds to hours, or `the profile's KEY`.
#[derive(Clone, Debug, PartialEq, Parameter)]
#[param(
    name = "window-limit",
    regex = r"the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:s|secs?|seconds?|m|mins?|minutes?|h|hours?)"
)]
pub struct WindowLimit(pub Limit);
limit_from_str!(
    WindowLimit,
    Units::Duration {
        shortest: 1.0,
        longest: 3600.0
    }
);

/// `{duration}`: a duration as features write it, inline only: `500 ms`, `30 seconds`,
/// `15 minutes`, `1 hour`.
#[derive(Clone, Copy, Debug, PartialEq, Parameter)]
#[param(
    name = "duration",
    regex = r"\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?)"
)]
pub struct StepDuration(pub Duration);

impl StepDuration {
    /// The numbers this parameter takes.
    pub const UNITS: Units = DurationLimit::UNITS;
}

impl FromStr for StepDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_for(s, Self::UNITS)? {
            Limit::Value(secs) => Duration::try_from_secs_f64(secs)
                .map(StepDuration)
                .map_err(|e| format!("{s:?} is not a duration: {e}")),
            Limit::Profile(_) => Err(format!("{s:?}: write the duration itself here")),
        }
    }
}

/// `{percent}`: a percentage, inline only: `1%`, `0.5%`; the number, in percent.
#[derive(Clone, Copy, Debug, PartialEq, Parameter)]
#[param(name = "percent", regex = r"\d+(?:\.\d+)?%")]
pub struct Percent(pub f64);

impl Percent {
    /// The numbers this parameter takes.
    pub const UNITS: Units = Units::Percent;
}

impl FromStr for Percent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_for(s, Self::UNITS)? {
            Limit::Value(p) => Ok(Percent(p)),
            Limit::Profile(_) => Err(format!("{s:?}: write the percentage itself here")),
        }
    }
}

/// Every limit parameter's name, regex and units, for the tests that keep the regexes,
/// the parser and the steps in step.
pub const PARAMETERS: &[(&str, &str, Units)] = &[
    (
        DurationLimit::NAME,
        DurationLimit::REGEX,
        DurationLimit::UNITS,
    ),
    (
        LongDurationLimit::NAME,
        LongDurationLimit::REGEX,
        LongDurationLimit::UNITS,
    ),
    (MsLimit::NAME, MsLimit::REGEX, MsLimit::UNITS),
    (PercentLimit::NAME, PercentLimit::REGEX, PercentLimit::UNITS),
    (
        RetentionLimit::NAME,
        RetentionLimit::REGEX,
        RetentionLimit::UNITS,
    ),
    (WindowLimit::NAME, WindowLimit::REGEX, WindowLimit::UNITS),
    (StepDuration::NAME, StepDuration::REGEX, StepDuration::UNITS),
    (Percent::NAME, Percent::REGEX, Percent::UNITS),
];

#[cfg(test)]
mod tests {
    use cucumber::codegen::Regex;

    use super::*;

    fn whole(re: &str) -> Regex {
        Regex::new(&format!("^(?:{re})$")).unwrap()
    }

    #[test]
    fn each_unit_word() {
        let d = |s: &str| s.parse::<LongDurationLimit>().unwrap().0;
        assert_eq!(d("500 ms"), Limit::Value(0.5));
        assert_eq!(d("500ms"), Limit::Value(0.5));
        assert_eq!(d("1 millisecond"), Limit::Value(0.001));
        assert_eq!(d("30 seconds"), Limit::Value(30.0));
        assert_eq!(d("1 sec"), Limit::Value(1.0));
        assert_eq!(d("2.5s"), Limit::Value(2.5));
        assert_eq!(d("15 minutes"), Limit::Value(900.0));
        assert_eq!(d("1 min"), Limit::Value(60.0));
        assert_eq!(d("2 m"), Limit::Value(120.0));
        assert_eq!(d("1 hour"), Limit::Value(3600.0));
        assert_eq!(d("26 h"), Limit::Value(26.0 * 3600.0));
        assert_eq!(d("15 days"), Limit::Value(15.0 * 86_400.0));
        assert_eq!(d("1d"), Limit::Value(86_400.0));
        assert_eq!("1%".parse::<PercentLimit>().unwrap().0, Limit::Value(1.0));
        assert_eq!(
            "0.5 %".parse::<PercentLimit>().unwrap().0,
            Limit::Value(0.5)
        );
        assert_eq!("250 ms".parse::<MsLimit>().unwrap().0, Limit::Value(0.25));
        assert_eq!(
            "2 days".parse::<RetentionLimit>().unwrap().0,
            Limit::Value(172_800.0)
        );
        assert_eq!(
            "5 minutes".parse::<WindowLimit>().unwrap().0,
            Limit::Value(300.0)
        );
        assert_eq!(
            "90 s".parse::<StepDuration>().unwrap().0,
            Duration::from_secs(90)
        );
        assert_eq!("0.5%".parse::<Percent>().unwrap().0, 0.5);
        assert_eq!(parse("3", Units::Count), Ok(Limit::Value(3.0)));
    }

    #[test]
    fn the_profile_form() {
        for (name, _, units) in PARAMETERS {
            let l = parse("the profile's chaos.osd.recovery_s", *units);
            if ["duration", "percent"].contains(name) {
                // Inline-only parameters read the key but refuse it in from_str.
                assert!(matches!(l, Ok(Limit::Profile(_))));
                continue;
            }
            assert_eq!(l, Ok(Limit::Profile("chaos.osd.recovery_s".into())));
        }
        assert_eq!(
            "the profile's dr.rto_s".parse::<LongDurationLimit>(),
            Ok(LongDurationLimit(Limit::Profile("dr.rto_s".into())))
        );
        assert!("the profile's dr.rto_s".parse::<StepDuration>().is_err());
        assert!("the profile's x_pct".parse::<Percent>().is_err());
    }

    #[test]
    fn bad_input() {
        let bad = |s: &str| s.parse::<LongDurationLimit>().unwrap_err();
        assert!(bad("60").contains("needs a unit"), "{}", bad("60"));
        assert!(bad("10 fortnights").contains("unknown unit"));
        assert!(bad("soon").contains("not a number"));
        assert!(bad("").contains("not a number"));
        assert!(bad("1.2.3 s").contains("not a number"));
        assert!(bad("the profile's x-y").contains("not a profile key"));
        assert!(bad("the profile's a b").contains("not a profile key"));
        assert!(bad("5 fortnights").starts_with("cannot read the limit \"5 fortnights\""));
        assert!("2 days".parse::<DurationLimit>().is_err());
        assert!("2 s".parse::<MsLimit>().is_err());
        assert!("500 ms".parse::<RetentionLimit>().is_err());
        assert!("500 ms".parse::<WindowLimit>().is_err());
        assert!("1".parse::<PercentLimit>().is_err());
        assert!("1 s".parse::<PercentLimit>().is_err());
        assert!("5 fortnights".parse::<StepDuration>().is_err());
        assert!("1".parse::<Percent>().is_err());
        assert!(parse("3 s", Units::Count).is_err());
    }

    #[test]
    fn durations_parse_in_every_unit() {
        let d = |s: &str| StepDuration::from_str(s).unwrap().0;
        assert_eq!(d("500 ms"), Duration::from_millis(500));
        assert_eq!(d("30 seconds"), Duration::from_secs(30));
        assert_eq!(d("1 second"), Duration::from_secs(1));
        assert_eq!(d("15 minutes"), Duration::from_secs(900));
        assert_eq!(d("2h"), Duration::from_secs(7200));
        assert_eq!(d("1.5 s"), Duration::from_millis(1500));
        assert!(StepDuration::from_str("5 fortnights").is_err());
    }

    #[test]
    fn percentages_parse() {
        assert_eq!(Percent::from_str("1%").unwrap().0, 1.0);
        assert_eq!(Percent::from_str("0.5%").unwrap().0, 0.5);
        assert!(Percent::from_str("1").is_err());
    }

    /// A parameter's regex takes exactly the unit words its parse takes.
    #[test]
    fn regexes_and_the_parser_agree() {
        for (name, re, units) in PARAMETERS {
            let re = whole(re);
            let mut words: Vec<&str> = UNITS.iter().map(|(w, _)| *w).collect();
            words.extend(["%", "", "fortnights"]);
            for w in words {
                for text in [format!("5 {w}"), format!("2.5{w}")] {
                    let text = text.trim().to_owned();
                    // The regexes are as the steps always took them: `{ms-limit}`
                    // takes `ms` but not its long forms, `{percent}` no space before
                    // `%`; their parse takes those too.
                    let narrower = (*name == "ms-limit" && w.starts_with("millisecond"))
                        || (*name == "percent" && text == "5 %");
                    assert_eq!(
                        re.is_match(&text),
                        parse(&text, *units).is_ok() && !narrower,
                        "{{{name}}} on {text:?}"
                    );
                }
            }
            let key = "the profile's chaos.osd.p99_during_ms";
            let inline_only = ["duration", "percent"].contains(name);
            assert_eq!(re.is_match(key), !inline_only, "{{{name}}} on {key:?}");
        }
    }

    /// Every limit or duration in a registered step, expression or regex, is one
    /// parameter's `REGEX` verbatim.
    #[test]
    fn every_step_limit_is_a_parameter() {
        let mut by_length: Vec<&str> = PARAMETERS.iter().map(|(_, re, _)| *re).collect();
        by_length.sort_by_key(|re| std::cmp::Reverse(re.len()));
        let mut with_limits = 0;
        for (_, re) in super::super::registered() {
            let mut rest = re.as_str().to_owned();
            for p in &by_length {
                rest = rest.replace(p, "LIMIT");
            }
            with_limits += usize::from(rest.contains("LIMIT"));
            for marker in [
                "the profile's",
                "milliseconds?",
                "hours?",
                "days?",
                " ?%",
                " ?ms",
            ] {
                assert!(
                    !rest.contains(marker),
                    "{} writes a limit ({marker}) of its own; use a parameter of steps/limit.rs",
                    re.as_str()
                );
            }
        }
        assert!(with_limits >= 19, "{with_limits} steps with limits");
    }
}
