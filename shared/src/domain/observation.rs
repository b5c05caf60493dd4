//! Health observations from wearables and phones (`docs/devices.md`): what a sample is
//! (a LOINC code, a value in the code's UCUM unit, an effective time or period, its
//! source and the source's sample id), the batch rules, query ranges and resolutions,
//! the downsampling of a series into buckets, and thresholds with their episodes.
//! Pure: no I/O.

use crate::domain::Timestamp;
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// The most samples one batch may carry.
pub const MAX_BATCH: usize = 1000;
/// The largest batch body accepted (1,000 samples of about 200 bytes, with room).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;
/// The longest sample id and source name.
pub const MAX_SAMPLE_ID: usize = 128;
pub const MAX_SOURCE: usize = 64;
/// How far in the future a sample's effective time may lie (clock skew of a phone).
pub const FUTURE_SKEW_SECS: i64 = 5 * 60;
/// The longest range one query may read.
pub const MAX_RANGE_DAYS: i64 = 31;
/// The most buckets one downsampled answer may hold.
pub const MAX_BUCKETS: i64 = 10_000;

/// The observation codes DoCare accepts: each a LOINC code with its one UCUM unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    HeartRate,
    RestingHeartRate,
    Steps,
    BodyWeight,
    Spo2,
    BloodGlucose,
    SleepDuration,
}

impl Code {
    pub const ALL: [Code; 7] = [
        Code::HeartRate,
        Code::RestingHeartRate,
        Code::Steps,
        Code::BodyWeight,
        Code::Spo2,
        Code::BloodGlucose,
        Code::SleepDuration,
    ];

    /// The LOINC code.
    pub fn loinc(self) -> &'static str {
        match self {
            Code::HeartRate => "8867-4",
            Code::RestingHeartRate => "40443-4",
            Code::Steps => "41950-7",
            Code::BodyWeight => "29463-7",
            Code::Spo2 => "59408-5",
            Code::BloodGlucose => "2339-0",
            Code::SleepDuration => "93832-4",
        }
    }

    /// LOINC's display name.
    pub fn display(self) -> &'static str {
        match self {
            Code::HeartRate => "Heart rate",
            Code::RestingHeartRate => "Resting heart rate",
            Code::Steps => "Number of steps in 24 hour Measured",
            Code::BodyWeight => "Body weight",
            Code::Spo2 => "Oxygen saturation in Arterial blood by Pulse oximetry",
            Code::BloodGlucose => "Glucose [Mass/volume] in Blood",
            Code::SleepDuration => "Sleep duration",
        }
    }

    /// The UCUM unit values of this code are in.
    pub fn unit(self) -> &'static str {
        match self {
            Code::HeartRate | Code::RestingHeartRate => "/min",
            Code::Steps => "/d",
            Code::BodyWeight => "kg",
            Code::Spo2 => "%",
            Code::BloodGlucose => "mg/dL",
            Code::SleepDuration => "h",
        }
    }

    /// The plausible range of a value (inclusive): a value outside is a device or
    /// client error, refused.
    pub fn range(self) -> (f64, f64) {
        match self {
            Code::HeartRate | Code::RestingHeartRate => (20.0, 300.0),
            Code::Steps => (0.0, 200_000.0),
            Code::BodyWeight => (0.5, 700.0),
            Code::Spo2 => (0.0, 100.0),
            Code::BloodGlucose => (10.0, 1500.0),
            Code::SleepDuration => (0.0, 24.0),
        }
    }

    pub fn parse(loinc: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.loinc() == loinc)
    }
}

/// When a sample was taken: an instant, or a period (`{start, end}`, sleep).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum EffectiveBody {
    /// RFC 3339.
    Instant(String),
    Period {
        start: String,
        end: String,
    },
}

/// One sample as a client sends it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ObservationSample")]
pub struct SampleBody {
    /// The source's id of the sample (a HealthKit UUID): a sample sent again with the
    /// same source, id and effective time is stored once.
    pub id: String,
    /// A LOINC code DoCare accepts (8867-4, 40443-4, 41950-7, 29463-7, 59408-5, 2339-0, 93832-4).
    pub code: String,
    pub value: f64,
    /// The code's UCUM unit (`/min`, `/d`, `kg`, `%`, `mg/dL`, `h`).
    pub unit: String,
    pub effective: EffectiveBody,
    /// Where it came from (`apple_health`, `google_health`, a device model): letters,
    /// digits, `.`, `_`, `-`, `:`.
    pub source: String,
}

/// A validated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub id: String,
    pub code: Code,
    pub value: f64,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub source: String,
}

fn is_token(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

impl Sample {
    /// Checks one sample (`at`: its index in the batch, for the message; never a value).
    pub fn parse(body: &SampleBody, now: Timestamp, at: usize) -> Result<Self, ApiError> {
        let bad = |what: &str| ApiError::validation(format!("samples[{at}].{what}"));
        if !is_token(&body.id, MAX_SAMPLE_ID) {
            return Err(bad(&format!(
                "id: 1 to {MAX_SAMPLE_ID} letters, digits, '.', '_', '-' or ':'"
            )));
        }
        if !is_token(&body.source, MAX_SOURCE) {
            return Err(bad(&format!(
                "source: 1 to {MAX_SOURCE} letters, digits, '.', '_', '-' or ':'"
            )));
        }
        let code =
            Code::parse(&body.code).ok_or_else(|| bad("code: not a supported LOINC code"))?;
        if body.unit != code.unit() {
            return Err(bad(&format!(
                "unit: {} is measured in '{}'",
                code.loinc(),
                code.unit()
            )));
        }
        let (low, high) = code.range();
        if !body.value.is_finite() || body.value < low || body.value > high {
            return Err(bad(&format!("value: outside {low}..={high}")));
        }
        let time = |text: &str, what: &str| {
            Timestamp::parse(text).ok_or_else(|| bad(&format!("effective{what}: not RFC 3339")))
        };
        let (start, end) = match &body.effective {
            EffectiveBody::Instant(at) => (time(at, "")?, None),
            EffectiveBody::Period { start, end } => {
                let (start, end) = (time(start, ".start")?, time(end, ".end")?);
                if end < start {
                    return Err(bad("effective.end: before its start"));
                }
                (start, Some(end))
            }
        };
        if end.unwrap_or(start).epoch_secs() > now.epoch_secs() + FUTURE_SKEW_SECS {
            return Err(bad("effective: in the future"));
        }
        Ok(Self {
            id: body.id.clone(),
            code,
            value: body.value,
            start,
            end,
            source: body.source.clone(),
        })
    }
}

/// Checks a batch: 1 to [`MAX_BATCH`] samples, each valid (the first bad one is named).
pub fn parse_batch(samples: &[SampleBody], now: Timestamp) -> Result<Vec<Sample>, ApiError> {
    if samples.is_empty() || samples.len() > MAX_BATCH {
        return Err(ApiError::validation(format!(
            "samples: 1 to {MAX_BATCH} per batch"
        )));
    }
    samples
        .iter()
        .enumerate()
        .map(|(at, body)| Sample::parse(body, now, at))
        .collect()
}

/// The bucket width of a downsampled query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution(i64);

impl Resolution {
    /// `1m`, `5m`, `15m`, `1h`, `6h` or `1d`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let secs = match text {
            "1m" => 60,
            "5m" => 300,
            "15m" => 900,
            "1h" => 3600,
            "6h" => 6 * 3600,
            "1d" => 86_400,
            _ => {
                return Err(ApiError::validation(
                    "resolution: one of 1m, 5m, 15m, 1h, 6h, 1d",
                ))
            }
        };
        Ok(Self(secs))
    }

    pub fn secs(self) -> i64 {
        self.0
    }

    /// The start of the bucket holding `at` (buckets are aligned to the epoch, UTC).
    pub fn bucket_of(self, at: i64) -> i64 {
        at.div_euclid(self.0) * self.0
    }
}

/// A query's range: `[from, to)`, at most [`MAX_RANGE_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Range {
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Self, ApiError> {
        let parse = |name: &str, value: Option<&str>| {
            value.and_then(Timestamp::parse).ok_or_else(|| {
                ApiError::validation(format!("{name}: an RFC 3339 time is required"))
            })
        };
        let (from, to) = (parse("from", from)?, parse("to", to)?);
        if to <= from {
            return Err(ApiError::validation("to: must be after from"));
        }
        if to.epoch_secs() - from.epoch_secs() > MAX_RANGE_DAYS * 86_400 {
            return Err(ApiError::validation(format!(
                "from, to: at most {MAX_RANGE_DAYS} days apart"
            )));
        }
        Ok(Self { from, to })
    }
}

/// One bucket of a downsampled series.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[schemars(rename = "ObservationBucket")]
pub struct Bucket {
    /// The bucket's start (RFC 3339 UTC).
    pub start: String,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
}

/// Folds `(epoch seconds, value)` points, in time order, into buckets (empty buckets
/// are left out).
pub fn downsample(
    points: impl IntoIterator<Item = (i64, f64)>,
    resolution: Resolution,
) -> Vec<Bucket> {
    struct Acc {
        start: i64,
        count: u64,
        min: f64,
        max: f64,
        sum: f64,
    }
    let mut out: Vec<Acc> = Vec::new();
    for (at, value) in points {
        let start = resolution.bucket_of(at);
        match out.last_mut() {
            Some(acc) if acc.start == start => {
                acc.count += 1;
                acc.min = acc.min.min(value);
                acc.max = acc.max.max(value);
                acc.sum += value;
            }
            _ => out.push(Acc {
                start,
                count: 1,
                min: value,
                max: value,
                sum: value,
            }),
        }
    }
    out.into_iter()
        .map(|acc| Bucket {
            start: chrono::DateTime::from_timestamp(acc.start, 0)
                .map(|t| Timestamp::new(t).to_string())
                .unwrap_or_default(),
            count: acc.count,
            min: acc.min,
            max: acc.max,
            avg: round(acc.sum / acc.count as f64),
        })
        .collect()
}

/// Two decimals: what a chart shows, and stable across platforms' float printing.
fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A provider's threshold on one code of one patient: values above `above` or below
/// `below` are out of range; an episode closes once values stayed in range for
/// `clear_after_minutes`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub code: Code,
    pub above: Option<f64>,
    pub below: Option<f64>,
    pub clear_after_minutes: i64,
}

/// The longest hold before an episode closes.
pub const MAX_CLEAR_AFTER_MINUTES: i64 = 7 * 24 * 60;

impl Threshold {
    pub fn new(
        code: Code,
        above: Option<f64>,
        below: Option<f64>,
        clear_after_minutes: i64,
    ) -> Result<Self, ApiError> {
        if above.is_none() && below.is_none() {
            return Err(ApiError::validation(
                "above, below: at least one is required",
            ));
        }
        let (low, high) = code.range();
        for (name, limit) in [("above", above), ("below", below)] {
            if let Some(limit) = limit {
                if !limit.is_finite() || limit < low || limit > high {
                    return Err(ApiError::validation(format!(
                        "{name}: outside {low}..={high}"
                    )));
                }
            }
        }
        if let (Some(above), Some(below)) = (above, below) {
            if below >= above {
                return Err(ApiError::validation("below: must be less than above"));
            }
        }
        if !(1..=MAX_CLEAR_AFTER_MINUTES).contains(&clear_after_minutes) {
            return Err(ApiError::validation(format!(
                "clear_after_minutes: 1 to {MAX_CLEAR_AFTER_MINUTES}"
            )));
        }
        Ok(Self {
            code,
            above,
            below,
            clear_after_minutes,
        })
    }

    pub fn is_out_of_range(&self, value: f64) -> bool {
        self.above.is_some_and(|a| value > a) || self.below.is_some_and(|b| value < b)
    }
}

/// What one batch means for one threshold: the last out-of-range time and the last
/// in-range time among its samples of the code (epoch seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Crossing {
    pub last_out: Option<i64>,
    pub last_in: Option<i64>,
}

impl Crossing {
    pub fn of<'a>(threshold: &Threshold, samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut crossing = Self::default();
        for sample in samples.into_iter().filter(|s| s.code == threshold.code) {
            let at = sample.start.epoch_secs();
            let slot = if threshold.is_out_of_range(sample.value) {
                &mut crossing.last_out
            } else {
                &mut crossing.last_in
            };
            *slot = Some(slot.map_or(at, |t: i64| t.max(at)));
        }
        crossing
    }
}

/// Whether an open episode whose last out-of-range value was at `last_out` closes,
/// given the latest in-range value at `last_in`: values stayed back in range for the
/// threshold's hold.
pub fn episode_closes(threshold: &Threshold, last_out: i64, last_in: i64) -> bool {
    last_in >= last_out + threshold.clear_after_minutes * 60
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).expect("time")
    }

    fn body(code: &str, value: f64, unit: &str) -> SampleBody {
        SampleBody {
            id: "A1B2-c3".into(),
            code: code.into(),
            value,
            unit: unit.into(),
            effective: EffectiveBody::Instant("2026-11-23T08:00:00Z".into()),
            source: "apple_health".into(),
        }
    }

    #[test]
    fn samples_are_checked_and_errors_name_the_index_not_the_value() {
        let now = at("2026-11-23T09:00:00Z");
        let ok = Sample::parse(&body("8867-4", 72.0, "/min"), now, 0).expect("valid");
        assert_eq!(ok.code, Code::HeartRate);
        for (sample, field) in [
            (body("8867-4", 72.0, "bpm"), "samples[3].unit"),
            (body("1234-5", 72.0, "/min"), "samples[3].code"),
            (body("8867-4", 999.0, "/min"), "samples[3].value"),
            (body("8867-4", f64::NAN, "/min"), "samples[3].value"),
        ] {
            let err = Sample::parse(&sample, now, 3).expect_err("invalid");
            let text = err.to_string();
            assert!(text.contains(field), "{text}");
            assert!(!text.contains("999"), "{text}");
        }
        let mut bad_id = body("8867-4", 72.0, "/min");
        bad_id.id = "a#b".into();
        assert!(Sample::parse(&bad_id, now, 0).is_err());
        let mut future = body("8867-4", 72.0, "/min");
        future.effective = EffectiveBody::Instant("2026-11-23T10:00:00Z".into());
        assert!(Sample::parse(&future, now, 0).is_err());
        let mut sleep = body("93832-4", 7.5, "h");
        sleep.effective = EffectiveBody::Period {
            start: "2026-11-22T23:00:00Z".into(),
            end: "2026-11-23T06:30:00Z".into(),
        };
        let sleep = Sample::parse(&sleep, now, 0).expect("a period");
        assert_eq!(sleep.end, Some(at("2026-11-23T06:30:00Z")));
    }

    #[test]
    fn batches_hold_one_to_a_thousand() {
        let now = at("2026-11-23T09:00:00Z");
        assert!(parse_batch(&[], now).is_err());
        let many = vec![body("8867-4", 72.0, "/min"); MAX_BATCH + 1];
        assert!(parse_batch(&many, now).is_err());
        assert_eq!(
            parse_batch(&many[..MAX_BATCH], now).expect("full").len(),
            MAX_BATCH
        );
    }

    #[test]
    fn downsampling_folds_a_week_of_minutes_into_hours() {
        let start = at("2026-11-16T00:00:00Z").epoch_secs();
        let points = (0..10_080).map(|i| (start + i * 60, 60.0 + (i % 60) as f64));
        let buckets = downsample(points, Resolution::parse("1h").expect("1h"));
        assert_eq!(buckets.len(), 168);
        assert!(buckets.iter().all(|b| b.count == 60));
        assert_eq!(buckets[0].start, "2026-11-16T00:00:00Z");
        assert_eq!(
            (buckets[0].min, buckets[0].max, buckets[0].avg),
            (60.0, 119.0, 89.5)
        );
        // Hours without points have no bucket; averages keep two decimals.
        let gap = [
            (start, 1.0),
            (start + 60, 2.0),
            (start + 120, 2.0),
            (start + 3 * 3600, 5.0),
        ];
        let buckets = downsample(gap, Resolution::parse("1h").expect("1h"));
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets[0].avg, 1.67);
        assert_eq!(buckets[1].start, "2026-11-16T03:00:00Z");
    }

    #[test]
    fn ranges_and_resolutions_are_bounded() {
        assert!(Resolution::parse("7s").is_err());
        assert!(Range::parse(Some("2026-11-01T00:00:00Z"), Some("2026-12-05T00:00:00Z")).is_err());
        assert!(Range::parse(Some("2026-11-02T00:00:00Z"), Some("2026-11-01T00:00:00Z")).is_err());
        assert!(Range::parse(None, Some("2026-11-01T00:00:00Z")).is_err());
        assert!(Range::parse(Some("2026-11-01T00:00:00Z"), Some("2026-11-08T00:00:00Z")).is_ok());
    }

    #[test]
    fn episodes_open_above_and_close_after_the_hold() {
        let t = Threshold::new(Code::RestingHeartRate, Some(120.0), None, 30).expect("valid");
        assert!(t.is_out_of_range(121.0) && !t.is_out_of_range(120.0));
        assert!(!episode_closes(&t, 1000, 1000 + 29 * 60));
        assert!(episode_closes(&t, 1000, 1000 + 30 * 60));
        assert!(Threshold::new(Code::RestingHeartRate, None, None, 30).is_err());
        assert!(Threshold::new(Code::RestingHeartRate, Some(60.0), Some(90.0), 30).is_err());
        assert!(Threshold::new(Code::RestingHeartRate, Some(120.0), None, 0).is_err());
    }
}
