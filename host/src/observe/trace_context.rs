//! The trace a request belongs to, read from its W3C `traceparent` header or, failing
//! that, from Google's `X-Cloud-Trace-Context` (Cloud Run's front end sends both), so the
//! request's log entries join its trace in Cloud Logging and Cloud Trace.
//!
//! A header that does not parse exactly is ignored: nothing a client sends is copied
//! into a log entry's trace fields unless it is the hex the formats define.

use http::HeaderMap;

/// W3C Trace Context header: `VERSION-TRACEID-PARENTID-FLAGS`, all lowercase hex.
const TRACEPARENT: &str = "traceparent";

/// Google's older header: `TRACEID/SPANID;o=OPTIONS`, the span id in decimal.
const CLOUD_TRACE_CONTEXT: &str = "x-cloud-trace-context";

/// The trace and span of a request, in the forms Cloud Logging expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The caller's span: 16 lowercase hex digits, if the header named one.
    pub span_id: Option<String>,
    /// Whether the caller sampled the trace.
    pub sampled: bool,
}

impl TraceContext {
    /// The trace of a request with `headers`: `traceparent` if it is well formed, else
    /// `X-Cloud-Trace-Context` if that is, else none. A header sent twice is ignored.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        single(headers, TRACEPARENT)
            .and_then(parse_traceparent)
            .or_else(|| single(headers, CLOUD_TRACE_CONTEXT).and_then(parse_cloud_trace_context))
    }
}

fn single<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    values.next().is_none().then(|| value.to_str().ok())?
}

/// Parses `traceparent` as W3C Trace Context level 1 says: version `00` has exactly
/// four fields; a later version may add fields after them; `ff` and all-zero ids are
/// invalid.
fn parse_traceparent(value: &str) -> Option<TraceContext> {
    let mut fields = value.split('-');
    let version = fields.next()?;
    let trace_id = fields.next()?;
    let parent_id = fields.next()?;
    let flags = fields.next()?;
    let valid = is_lower_hex(version, 2)
        && version != "ff"
        && (version != "00" || fields.next().is_none())
        && is_lower_hex(trace_id, 32)
        && is_lower_hex(parent_id, 16)
        && is_lower_hex(flags, 2)
        && !is_zero(trace_id)
        && !is_zero(parent_id);
    valid.then(|| TraceContext {
        trace_id: trace_id.to_owned(),
        span_id: Some(parent_id.to_owned()),
        sampled: u8::from_str_radix(flags, 16).is_ok_and(|flags| flags & 1 == 1),
    })
}

/// Parses `TRACEID[/SPANID][;o=0|1]`; the decimal span id becomes 16 hex digits.
fn parse_cloud_trace_context(value: &str) -> Option<TraceContext> {
    let (ids, options) = match value.split_once(';') {
        Some((ids, options)) => (ids, Some(options)),
        None => (value, None),
    };
    let (trace_id, span_id) = match ids.split_once('/') {
        Some((trace_id, span_id)) => (trace_id, Some(span_id)),
        None => (ids, None),
    };
    let trace_id = trace_id.to_ascii_lowercase();
    if !is_lower_hex(&trace_id, 32) || is_zero(&trace_id) {
        return None;
    }
    let span_id = match span_id {
        Some(decimal) => Some(decimal_span_id(decimal)?),
        None => None,
    };
    let sampled = match options {
        None => false,
        Some("o=0") => false,
        Some("o=1") => true,
        Some(_) => return None,
    };
    Some(TraceContext {
        trace_id,
        span_id,
        sampled,
    })
}

/// A nonzero 64-bit decimal span id as the 16 hex digits Cloud Logging expects.
fn decimal_span_id(decimal: &str) -> Option<String> {
    if decimal.is_empty() || !decimal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = decimal.parse().ok().filter(|&id| id != 0)?;
    Some(format!("{id:016x}"))
}

fn is_lower_hex(value: &str, len: usize) -> bool {
    value.len() == len
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_zero(value: &str) -> bool {
    value.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn context(pairs: &[(&'static str, &str)]) -> Option<TraceContext> {
        TraceContext::from_headers(&headers(pairs))
    }

    #[test]
    fn traceparent_is_read_and_preferred() {
        let found = context(&[
            (TRACEPARENT, &format!("00-{TRACE}-00f067aa0ba902b7-01")),
            (
                CLOUD_TRACE_CONTEXT,
                "0af7651916cd43dd8448eb211c80319c/1;o=0",
            ),
        ]);
        assert_eq!(
            found,
            Some(TraceContext {
                trace_id: TRACE.into(),
                span_id: Some("00f067aa0ba902b7".into()),
                sampled: true,
            })
        );
        let unsampled = context(&[(TRACEPARENT, &format!("00-{TRACE}-00f067aa0ba902b7-02"))]);
        assert!(!unsampled.unwrap().sampled);
    }

    #[test]
    fn a_later_traceparent_version_may_add_fields() {
        let found = context(&[(
            TRACEPARENT,
            &format!("01-{TRACE}-00f067aa0ba902b7-01-extra"),
        )]);
        assert_eq!(found.unwrap().trace_id, TRACE);
    }

    #[test]
    fn cloud_trace_context_span_id_is_decimal() {
        let found = context(&[(
            CLOUD_TRACE_CONTEXT,
            "105445AA7843BC8BF206B12000100000/18446744073709551615;o=1",
        )]);
        assert_eq!(
            found,
            Some(TraceContext {
                trace_id: "105445aa7843bc8bf206b12000100000".into(),
                span_id: Some("ffffffffffffffff".into()),
                sampled: true,
            })
        );
        let bare = context(&[(CLOUD_TRACE_CONTEXT, TRACE)]).unwrap();
        assert_eq!((bare.span_id, bare.sampled), (None, false));
        let one = context(&[(CLOUD_TRACE_CONTEXT, &format!("{TRACE}/1"))]).unwrap();
        assert_eq!(one.span_id.as_deref(), Some("0000000000000001"));
    }

    #[test]
    fn malformed_traceparent_falls_back_to_cloud_trace_context() {
        let fallback = format!("{TRACE}/255;o=1");
        for bad in [
            format!("00-{TRACE}-00f067aa0ba902b7-01-extra"),
            format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase()),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{TRACE}-0000000000000000-01"),
            format!("00-{TRACE}-00f067aa0ba902b7"),
            format!("00-{TRACE}-00f067aa0ba902b-01"),
            "00-not-hex-at-all".to_owned(),
        ] {
            assert_eq!(context(&[(TRACEPARENT, &bad)]), None, "{bad}");
            let found = context(&[(TRACEPARENT, &bad), (CLOUD_TRACE_CONTEXT, &fallback)]);
            assert_eq!(found.unwrap().span_id.as_deref(), Some("00000000000000ff"));
        }
    }

    #[test]
    fn malformed_cloud_trace_context_is_ignored() {
        for bad in [
            "",
            "abc/1;o=1",
            &format!("{TRACE}/0;o=1"),
            &format!("{TRACE}/-1;o=1"),
            &format!("{TRACE}/+1;o=1"),
            &format!("{TRACE}/18446744073709551616;o=1"),
            &format!("{TRACE}/12;o=2"),
            &format!("{TRACE}/12;o=1<script>"),
            &format!("{TRACE}x/12;o=1"),
        ] {
            assert_eq!(context(&[(CLOUD_TRACE_CONTEXT, bad)]), None, "{bad}");
        }
    }

    #[test]
    fn a_header_sent_twice_is_ignored() {
        let value = format!("00-{TRACE}-00f067aa0ba902b7-01");
        assert_eq!(
            context(&[(TRACEPARENT, &value), (TRACEPARENT, &value)]),
            None
        );
    }
}
