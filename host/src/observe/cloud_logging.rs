//! Log entries in Cloud Logging's structured format: one JSON object per line, which
//! Cloud Run and GKE's logging agent turn into a `LogEntry` with its severity, time,
//! HTTP request and trace.
//!
//! An event's fields become the entry's `jsonPayload`; a dotted field name nests
//! (`httpRequest.status` becomes `"httpRequest": {"status": ...}`). The `request` span's
//! `trace`, `span_id` and `trace_sampled` become the special `logging.googleapis.com/*`
//! keys, so every entry logged during a request, the guest's output included, joins
//! that request's trace.

use std::fmt;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Span fields that become Cloud Logging's trace keys, by name.
const TRACE_KEYS: [(&str, &str); 3] = [
    ("trace", "logging.googleapis.com/trace"),
    ("span_id", "logging.googleapis.com/spanId"),
    ("trace_sampled", "logging.googleapis.com/trace_sampled"),
];

/// Writes each event as one Cloud Logging JSON entry. Span fields must be stored as
/// JSON, so it pairs with [`JsonFields`].
#[derive(Debug, Default)]
pub struct CloudLoggingFormat;

impl<S> FormatEvent<S, JsonFields> for CloudLoggingFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut entry = Map::new();
        entry.insert("severity".into(), severity(*metadata.level()).into());
        entry.insert(
            "time".into(),
            humantime::format_rfc3339_micros(SystemTime::now())
                .to_string()
                .into(),
        );
        entry.insert("target".into(), metadata.target().into());

        for span in ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
        {
            let extensions = span.extensions();
            let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                continue;
            };
            let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) else {
                continue;
            };
            for (name, value) in fields {
                let key = TRACE_KEYS
                    .iter()
                    .find(|(field, _)| *field == name)
                    .map_or(name, |(_, key)| (*key).to_owned());
                entry.insert(key, value);
            }
        }

        event.record(&mut EntryFields(&mut entry));
        let line = serde_json::to_string(&entry).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Cloud Logging's name for a level (it has no TRACE).
fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Records an event's fields into the entry, nesting dotted names.
struct EntryFields<'a>(&'a mut Map<String, Value>);

impl EntryFields<'_> {
    fn insert(&mut self, field: &Field, value: Value) {
        let mut object = &mut *self.0;
        let mut parts = field.name().split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                object.insert(part.to_owned(), value);
                return;
            }
            let child = object
                .entry(part)
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            object = child.as_object_mut().expect("made an object above");
        }
    }
}

impl Visit for EntryFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field, value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, format!("{value:?}").into());
    }
}
