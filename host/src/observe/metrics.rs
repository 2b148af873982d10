//! The host's metrics, in Prometheus form: what
//! an operator watches to size and alert on an instance. Recording is a few atomic
//! operations per request, so it happens whether or not anything scrapes.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

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

/// Key-value operation buckets, in seconds: from a local store's tens of microseconds to
/// a Redis call timing out.
const KEY_VALUE_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0, 5.0,
];

/// Status classes counted from the start, so a rate over them is defined before the
/// first such response.
const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Why a request was turned away with `503` before it reached a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The queue was already full.
    QueueFull,
    /// No slot came free within the queue timeout.
    QueueTimeout,
}

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WasiLabel {
    wasi: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreOperationLabel {
    store: String,
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: String,
}

/// The WASI versions a component may be built for, as the `wasi` label names them.
pub const WASI_VERSIONS: [&str; 2] = ["0.2", "0.3"];

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
    components: Family<WasiLabel, Gauge>,
    instances: Gauge,
    connections_open: Gauge,
    connections_refused: Counter,
    key_value_operations: Family<StoreOperationLabel, Counter>,
    key_value_errors: Family<StoreOperationLabel, Counter>,
    key_value_duration: Family<StoreLabel, Histogram>,
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
        let mut register = Registrar(&mut registry);
        let metrics = Self {
            requests: register.counter_family(
                "requests",
                "Requests answered, by status class (probe requests excluded)",
            ),
            request_duration: register.seconds(
                "request_duration",
                "Time from a request's arrival to the end of its response, by status class",
                Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS)),
            ),
            requests_in_flight: register.metric(
                "requests_in_flight",
                "Requests arrived whose response has not ended yet, queued ones included",
                Gauge::default(),
            ),
            instantiation_duration: register.seconds(
                "instantiation_duration",
                "Time to make one guest instance",
                Histogram::new(INSTANTIATION_BUCKETS),
            ),
            admission_rejections: register.counter_family(
                "admission_rejections",
                "Requests turned away with 503 because no slot came free, by reason",
            ),
            guest_failures: register
                .counter_family("guest_failures", "Requests whose guest failed, by kind"),
            component_generation: register.metric(
                "component_generation",
                "Generation of the component being served: 1 at startup, one more per swap",
                Gauge::default(),
            ),
            components: register.metric(
                "components",
                "Components of the version being served, by the WASI version they were built for",
                Family::default(),
            ),
            instances: register.metric(
                "instances",
                "Guest instances alive, serving requests or idle before reuse",
                Gauge::default(),
            ),
            connections_open: register.metric(
                "connections_open",
                "Client connections open, on every port",
                Gauge::default(),
            ),
            connections_refused: register.metric(
                "connections_refused",
                "Connections closed at once because too many were open",
                Counter::default(),
            ),
            key_value_operations: register.counter_family(
                "key_value_operations",
                "Key-value operations guests ran, by store and operation",
            ),
            key_value_errors: register.counter_family(
                "key_value_errors",
                "Key-value operations that failed in their store (unreachable, timed out, \
                 refused), by store and operation",
            ),
            key_value_duration: register.seconds(
                "key_value_operation_duration",
                "Time one key-value operation took in its store, by store",
                Family::new_with_constructor(|| Histogram::new(KEY_VALUE_BUCKETS)),
            ),
            registry,
        };
        metrics.expose_every_label();
        metrics
    }

    /// Creates every known series, so that each is exposed at zero before it is first
    /// counted and a rate over it is defined.
    fn expose_every_label(&self) {
        for status_class in STATUS_CLASSES {
            self.requests
                .get_or_create_owned(&StatusClassLabel { status_class });
        }
        for rejection in [Rejection::QueueFull, Rejection::QueueTimeout] {
            self.admission_rejections.get_or_create_owned(&ReasonLabel {
                reason: rejection_label(rejection),
            });
        }
        for failure in GuestFailure::ALL {
            self.guest_failures.get_or_create_owned(&KindLabel {
                kind: failure.label(),
            });
        }
        for wasi in WASI_VERSIONS {
            self.components.get_or_create_owned(&WasiLabel { wasi });
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

    /// Instantiating the component took `duration`.
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

    /// The version now served has `count` components built for each WASI version, as
    /// `(version, count)` with the versions of [`WASI_VERSIONS`].
    pub fn set_components(&self, counts: &[(&'static str, usize)]) {
        for &(wasi, count) in counts {
            self.components
                .get_or_create(&WasiLabel { wasi })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// An instance was made.
    pub fn instance_started(&self) {
        self.instances.inc();
    }

    /// An instance was dropped.
    pub fn instance_stopped(&self) {
        self.instances.dec();
    }

    /// A client connection was accepted; [`Metrics::connection_closed`] must follow.
    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    /// A connection that was accepted is closed.
    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// A connection was closed at once: too many were open.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A guest's `operation` on key-value store `store` took `duration`, and failed in
    /// the store unless `succeeded`.
    pub fn key_value_operation(
        &self,
        store: &str,
        operation: &'static str,
        duration: Duration,
        succeeded: bool,
    ) {
        let label = StoreOperationLabel {
            store: store.to_owned(),
            operation,
        };
        self.key_value_operations.get_or_create(&label).inc();
        if !succeeded {
            self.key_value_errors.get_or_create(&label).inc();
        }
        self.key_value_duration
            .get_or_create(&StoreLabel { store: label.store })
            .observe(duration.as_secs_f64());
    }

    /// Every metric in the OpenMetrics text format, which Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Registers metrics, each returned for recording.
struct Registrar<'a>(&'a mut Registry);

impl Registrar<'_> {
    fn metric<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }

    fn seconds<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0
            .register_with_unit(name, help, Unit::Seconds, metric.clone());
        metric
    }

    fn counter_family<L>(&mut self, name: &str, help: &str) -> Family<L, Counter>
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    {
        self.metric(name, help, Family::default())
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
        metrics.key_value_operation("default", "get", Duration::from_micros(80), false);
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
            "wasi_host_key_value_operations_total{store=\"default\",operation=\"get\"} 1",
            "wasi_host_key_value_errors_total{store=\"default\",operation=\"get\"} 1",
            "wasi_host_key_value_operation_duration_seconds_count{store=\"default\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
