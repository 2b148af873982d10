//! Several processes' metrics as one: `--workers` serves the sum of every worker's
//! exposition at the primary's metrics address.

/// Families that describe the version served, the same in every process while they
/// agree: their merged value is the highest, not the sum.
const SAME_IN_EVERY_PROCESS: [&str; 2] = ["wasi_host_component_generation", "wasi_host_components"];

/// Sums several processes' expositions of the same metrics, series by series (a series
/// only some processes have counts as zero in the others), but for the families of
/// [`SAME_IN_EVERY_PROCESS`].
pub fn merge(texts: &[String]) -> String {
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
            let same = SAME_IN_EVERY_PROCESS.contains(&families[index].name);
            let samples = &mut families[index].samples;
            match samples.iter_mut().find(|(known, _)| *known == series) {
                Some((_, total)) if same => *total = total.max(value),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::observe::metrics::Metrics;

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
        assert!(merged.ends_with("\n# EOF\n"), "{merged}");
        assert_eq!(merged.matches("# EOF").count(), 1);
    }
}
