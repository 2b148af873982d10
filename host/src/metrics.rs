//! The host's metrics, in Prometheus form (served by [`crate::metrics_server`]): what
//! an operator watches to size and alert on an instance. Recording is a few atomic
//! operations per request, so it happens whether or not anything scrapes.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::admission::Rejection;

/// Every metric's name starts with this.
const PREFIX: &str = "wasi_host";

/// Request duration buckets, in seconds: from a millisecond to Cloud Run's 300 s default
/// request timeout.
const REQUEST_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Instantiation buckets, in seconds: a pre-instantiated component takes microseconds,
/// a large one (an interpreter) milliseconds.
const INSTANTIATION_BUCKETS: [f64; 13] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,
];

/// Status classes counted from the start, so a rate over them is defined before the
/// first such response.
const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// How a guest failed to serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFailure {
    /// It trapped (a panic, running out of memory), or its instance could not be made.
    Trap,
    /// It was still running at the request deadline.
    Timeout,
    /// It answered with a wasi:http error code instead of a response.
    ErrorCode,
    /// It returned without answering.
    NoResponse,
}

impl GuestFailure {
    const ALL: [GuestFailure; 4] = [
        GuestFailure::Trap,
        GuestFailure::Timeout,
        GuestFailure::ErrorCode,
        GuestFailure::NoResponse,
    ];

    fn label(self) -> &'static str {
        match self {
            GuestFailure::Trap => "trap",
            GuestFailure::Timeout => "timeout",
            GuestFailure::ErrorCode => "error_code",
            GuestFailure::NoResponse => "no_response",
        }
    }
}

fn rejection_label(rejection: Rejection) -> &'static str {
    match rejection {
        Rejection::QueueFull => "queue_full",
        Rejection::QueueTimeout => "queue_timeout",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusClassLabel {
    status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// The host's metrics and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<StatusClassLabel, Counter>,
    request_duration: Family<StatusClassLabel, Histogram>,
    requests_in_flight: Gauge,
    instantiation_duration: Histogram,
    admission_rejections: Family<ReasonLabel, Counter>,
    guest_failures: Family<KindLabel, Counter>,
    component_generation: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let requests = Family::<StatusClassLabel, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by status class (probe requests excluded)",
            requests.clone(),
        );
        let request_duration = Family::<StatusClassLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(REQUEST_BUCKETS)
        });
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to the end of its response, by status class",
            Unit::Seconds,
            request_duration.clone(),
        );
        let requests_in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests arrived whose response has not ended yet, queued ones included",
            requests_in_flight.clone(),
        );
        let instantiation_duration = Histogram::new(INSTANTIATION_BUCKETS);
        registry.register_with_unit(
            "instantiation_duration",
            "Time to instantiate the component for one request",
            Unit::Seconds,
            instantiation_duration.clone(),
        );
        let admission_rejections = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "admission_rejections",
            "Requests turned away with 503 because no slot came free, by reason",
            admission_rejections.clone(),
        );
        let guest_failures = Family::<KindLabel, Counter>::default();
        registry.register(
            "guest_failures",
            "Requests whose guest failed, by kind",
            guest_failures.clone(),
        );
        let component_generation = Gauge::default();
        registry.register(
            "component_generation",
            "Generation of the component being served: 1 at startup, one more per swap",
            component_generation.clone(),
        );

        // Creating a series is enough to expose it at zero.
        for status_class in STATUS_CLASSES {
            requests.get_or_create_owned(&StatusClassLabel { status_class });
        }
        for rejection in [Rejection::QueueFull, Rejection::QueueTimeout] {
            admission_rejections.get_or_create_owned(&ReasonLabel {
                reason: rejection_label(rejection),
            });
        }
        for failure in GuestFailure::ALL {
            guest_failures.get_or_create_owned(&KindLabel {
                kind: failure.label(),
            });
        }
        Self {
            registry,
            requests,
            request_duration,
            requests_in_flight,
            instantiation_duration,
            admission_rejections,
            guest_failures,
            component_generation,
        }
    }

    /// A request arrived; [`Metrics::request_left`] must follow.
    pub fn request_arrived(&self) {
        self.requests_in_flight.inc();
    }

    /// A request that arrived is gone, answered or not.
    pub fn request_left(&self) {
        self.requests_in_flight.dec();
    }

    /// A request's response with `status` ended `duration` after the request arrived.
    pub fn request_answered(&self, status: http::StatusCode, duration: Duration) {
        let label = StatusClassLabel {
            status_class: status_class(status),
        };
        self.requests.get_or_create(&label).inc();
        self.request_duration
            .get_or_create(&label)
            .observe(duration.as_secs_f64());
    }

    /// Instantiating the component for a request took `duration`.
    pub fn instantiated(&self, duration: Duration) {
        self.instantiation_duration.observe(duration.as_secs_f64());
    }

    /// A request was turned away for `rejection`.
    pub fn admission_rejected(&self, rejection: Rejection) {
        let reason = rejection_label(rejection);
        self.admission_rejections
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A request's guest failed as `failure` says.
    pub fn guest_failed(&self, failure: GuestFailure) {
        let kind = failure.label();
        self.guest_failures.get_or_create(&KindLabel { kind }).inc();
    }

    /// The component now served is generation `generation` (1 at startup).
    pub fn set_component_generation(&self, generation: u64) {
        self.component_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Every metric in the OpenMetrics text format, which Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Sums several processes' expositions of the same metrics, series by series (a series
/// only some processes have counts as zero in the others). The component generation,
/// the same in every process while they agree, is the highest instead.
pub fn merge(texts: &[String]) -> String {
    const GENERATION: &str = "wasi_host_component_generation";
    // Families in order of first appearance.
    let mut families: Vec<FamilyText> = Vec::new();
    for text in texts {
        let mut current = None;
        for line in text.lines() {
            if line == "# EOF" {
                continue;
            }
            if let Some(comment) = line.strip_prefix("# ") {
                let name = comment.split(' ').nth(1).unwrap_or_default();
                let index = match families.iter().position(|family| family.name == name) {
                    Some(index) => index,
                    None => {
                        families.push(FamilyText {
                            name,
                            comments: Vec::new(),
                            samples: Vec::new(),
                        });
                        families.len() - 1
                    }
                };
                let comments = &mut families[index].comments;
                if !comments.contains(&line) {
                    comments.push(line);
                }
                current = Some(index);
                continue;
            }
            let (Some(index), Some((series, value))) = (current, line.rsplit_once(' ')) else {
                continue;
            };
            let value = SampleValue::parse(value);
            let samples = &mut families[index].samples;
            match samples.iter_mut().find(|(known, _)| *known == series) {
                Some((_, total)) if series == GENERATION => *total = total.max(value),
                Some((_, total)) => *total = total.add(value),
                None => samples.push((series, value)),
            }
        }
    }
    let mut merged = String::new();
    for FamilyText {
        comments, samples, ..
    } in families
    {
        for comment in comments {
            merged.push_str(comment);
            merged.push('\n');
        }
        for (series, value) in samples {
            merged.push_str(&format!("{series} {value}\n"));
        }
    }
    merged.push_str("# EOF\n");
    merged
}

/// One metric family in an exposition: its `# HELP`/`# TYPE`/`# UNIT` lines and its
/// samples, series by series.
struct FamilyText<'a> {
    name: &'a str,
    comments: Vec<&'a str>,
    samples: Vec<(&'a str, SampleValue)>,
}

/// A sample's value: counts stay integers, as the encoder writes them.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
enum SampleValue {
    Integer(i64),
    Float(f64),
}

impl SampleValue {
    fn parse(text: &str) -> Self {
        match text.parse() {
            Ok(integer) => Self::Integer(integer),
            Err(_) => Self::Float(text.parse().unwrap_or(f64::NAN)),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Self::Integer(integer) => integer as f64,
            Self::Float(float) => float,
        }
    }

    fn add(self, other: Self) -> Self {
        match (self, other) {
            (Self::Integer(a), Self::Integer(b)) => Self::Integer(a.saturating_add(b)),
            _ => Self::Float(self.as_f64() + other.as_f64()),
        }
    }

    fn max(self, other: Self) -> Self {
        if other.as_f64() > self.as_f64() {
            other
        } else {
            self
        }
    }
}

impl std::fmt::Display for SampleValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Integer(integer) => write!(f, "{integer}"),
            // OpenMetrics floats keep a decimal point or exponent.
            Self::Float(float) if float.fract() == 0.0 && float.is_finite() => {
                write!(f, "{float:.1}")
            }
            Self::Float(float) => write!(f, "{float}"),
        }
    }
}

fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let metrics = Metrics::new();
        metrics.set_component_generation(1);
        metrics.request_arrived();
        metrics.request_answered(http::StatusCode::NOT_FOUND, Duration::from_millis(3));
        metrics.admission_rejected(Rejection::QueueTimeout);
        metrics.guest_failed(GuestFailure::ErrorCode);
        metrics.instantiated(Duration::from_micros(40));
        let text = metrics.encode();
        for line in [
            "wasi_host_requests_total{status_class=\"4xx\"} 1",
            "wasi_host_requests_total{status_class=\"2xx\"} 0",
            "wasi_host_request_duration_seconds_count{status_class=\"4xx\"} 1",
            "wasi_host_request_duration_seconds_bucket{le=\"0.005\",status_class=\"4xx\"} 1",
            "wasi_host_requests_in_flight 1",
            "wasi_host_instantiation_duration_seconds_count 1",
            "wasi_host_admission_rejections_total{reason=\"queue_timeout\"} 1",
            "wasi_host_admission_rejections_total{reason=\"queue_full\"} 0",
            "wasi_host_guest_failures_total{kind=\"error_code\"} 1",
            "wasi_host_guest_failures_total{kind=\"trap\"} 0",
            "wasi_host_component_generation 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }

    #[test]
    fn merged_expositions_sum_every_series() {
        let primary = Metrics::new();
        primary.set_component_generation(2);
        primary.request_answered(http::StatusCode::OK, Duration::from_millis(3));
        primary.request_arrived();
        let secondary = Metrics::new();
        secondary.set_component_generation(2);
        secondary.request_answered(http::StatusCode::OK, Duration::from_millis(30));
        secondary.request_answered(http::StatusCode::BAD_GATEWAY, Duration::from_secs(1));

        let merged = merge(&[primary.encode(), secondary.encode()]);
        for line in [
            "wasi_host_requests_total{status_class=\"2xx\"} 2",
            "wasi_host_requests_total{status_class=\"5xx\"} 1",
            "wasi_host_request_duration_seconds_count{status_class=\"2xx\"} 2",
            "wasi_host_request_duration_seconds_sum{status_class=\"2xx\"} 0.033",
            "wasi_host_request_duration_seconds_bucket{le=\"0.005\",status_class=\"2xx\"} 1",
            "wasi_host_request_duration_seconds_bucket{le=\"0.05\",status_class=\"2xx\"} 2",
            "wasi_host_request_duration_seconds_count{status_class=\"5xx\"} 1",
            "wasi_host_request_duration_seconds_sum{status_class=\"5xx\"} 1.0",
            "wasi_host_requests_in_flight 1",
            "wasi_host_component_generation 2",
        ] {
            assert!(
                merged.lines().any(|l| l == line),
                "no {line:?} in:\n{merged}"
            );
        }
        // Each family once, its samples under it, and one end.
        assert_eq!(
            merged.matches("# TYPE wasi_host_requests counter").count(),
            1
        );
        assert!(
            merged.ends_with("wasi_host_component_generation 2\n# EOF\n"),
            "{merged}"
        );
        assert_eq!(merged.matches("# EOF").count(), 1);
    }
}
