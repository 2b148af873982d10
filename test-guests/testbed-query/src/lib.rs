//! How the testbeds read their queries: `NAME=NUMBER` parameters, and the
//! `/fetch?OPTIONS&url=URL` form, where the URL is the rest of the query.

/// The number given as `name=` in `query`, if any and if it parses.
pub fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
}

/// A `/fetch` query split into its options (before `url=`) and the URL's scheme,
/// authority and path (`/` when the URL has none).
pub struct FetchQuery<'a> {
    /// The parameters before `url=`.
    pub options: &'a str,
    /// The URL's scheme, empty when it has none.
    pub scheme: &'a str,
    /// The URL's authority.
    pub authority: &'a str,
    /// The URL's path and query.
    pub path: &'a str,
}

impl<'a> FetchQuery<'a> {
    /// Splits `query`.
    pub fn parse(query: &'a str) -> Self {
        let (options, url) = query.split_once("url=").unwrap_or((query, ""));
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        Self {
            options,
            scheme,
            authority,
            path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_query_splits_options_and_url() {
        let query = FetchQuery::parse("first_byte_ms=5&url=http://127.0.0.1:8080/a?b=c");
        assert_eq!(query.options, "first_byte_ms=5&");
        assert_eq!(query.scheme, "http");
        assert_eq!(query.authority, "127.0.0.1:8080");
        assert_eq!(query.path, "/a?b=c");
        assert_eq!(param(query.options, "first_byte_ms"), Some(5));
        assert_eq!(FetchQuery::parse("url=example.com").path, "/");
    }
}
