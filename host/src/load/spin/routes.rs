//! Which component of a Spin application serves a request path, by Spin's rules: exact
//! routes (`/cart`) before `:name` segments before trailing wildcards (`/cart/...`),
//! the longest match first. Matching uses the same crate Spin does (`routefinder`), so
//! an application routes the same on both hosts. A routed request carries the headers
//! Spin sets (`spin-path-info`, `spin-matched-route`, `spin-path-match-NAME`, …), which
//! Spin SDKs read.

use anyhow::{Result, anyhow};
use http::{HeaderName, HeaderValue};

use super::manifest::RouteSpec;

/// The routes of one application.
#[derive(Debug)]
pub struct Routes {
    router: routefinder::Router<Target>,
}

#[derive(Debug)]
struct Target {
    component: usize,
    /// The route as the manifest wrote it.
    route: String,
    /// The route without its trailing wildcard.
    prefix: String,
}

/// A request path matched to a route.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// The index of the component that serves it.
    pub component: usize,
    /// The route as the manifest wrote it (`/users/:id/...`).
    pub route: &'a str,
    /// The route without its trailing wildcard (`/users/:id`).
    pub prefix: &'a str,
    /// The part of the path the trailing wildcard matched, from its `/`; empty for an
    /// exact route.
    pub path_info: String,
    /// The `:name` segments and what they matched.
    pub params: Vec<(String, String)>,
}

impl Routes {
    /// The routing table for `routes`.
    pub fn new(routes: &[RouteSpec]) -> Result<Self> {
        let mut router = routefinder::Router::new();
        for spec in routes {
            // As Spin does: one trailing slash is dropped, and `/...` is routefinder's `/*`.
            let trimmed = spec.route.strip_suffix('/').unwrap_or(&spec.route);
            let (pattern, prefix) = match trimmed.strip_suffix("/...") {
                Some(prefix) => (format!("{prefix}/*"), prefix),
                None => (trimmed.to_owned(), trimmed),
            };
            let target = Target {
                component: spec.component,
                route: spec.route.clone(),
                prefix: prefix.to_owned(),
            };
            router
                .add(pattern, target)
                .map_err(|error| anyhow!("route `{}`: {error}", spec.route))?;
        }
        Ok(Self { router })
    }

    /// The route that serves `path`, if any.
    pub fn find<'a>(&'a self, path: &str) -> Option<RouteMatch<'a>> {
        let found = self.router.best_match(path)?;
        let target = found.handler();
        let captures = found.captures();
        // Spin's `spin-path-info` keeps the path's trailing slash, which routefinder drops.
        let path_info = match (captures.wildcard(), path.ends_with('/')) {
            (None, _) => String::new(),
            (Some(""), false) => String::new(),
            (Some(""), true) => "/".to_owned(),
            (Some(rest), false) => format!("/{rest}"),
            (Some(rest), true) => format!("/{rest}/"),
        };
        Some(RouteMatch {
            component: target.component,
            route: &target.route,
            prefix: &target.prefix,
            path_info,
            params: captures
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        })
    }
}

impl RouteMatch<'_> {
    /// The headers Spin adds to a request it routed, for a request to `full_url`.
    pub fn spin_headers(&self, full_url: &str) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = vec![
            ("spin-full-url".to_owned(), full_url.to_owned()),
            ("spin-path-info".to_owned(), self.path_info.clone()),
            ("spin-matched-route".to_owned(), self.route.to_owned()),
            ("spin-raw-component-route".to_owned(), self.route.to_owned()),
            ("spin-component-route".to_owned(), self.prefix.to_owned()),
            ("spin-base-path".to_owned(), "/".to_owned()),
        ];
        headers.extend(
            self.params
                .iter()
                .map(|(name, value)| (format!("spin-path-match-{name}"), value.clone())),
        );
        headers
            .into_iter()
            // A parameter name that is not a header name, or a value that is not a header
            // value, is left out rather than failing the request.
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::try_from(name).ok()?,
                    HeaderValue::try_from(value).ok()?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(specs: &[(&str, usize)]) -> Routes {
        let specs: Vec<RouteSpec> = specs
            .iter()
            .map(|&(route, component)| RouteSpec {
                route: route.to_owned(),
                component,
            })
            .collect();
        Routes::new(&specs).expect("valid routes")
    }

    fn component_for(routes: &Routes, path: &str) -> Option<usize> {
        routes.find(path).map(|found| found.component)
    }

    #[test]
    fn exact_beats_parameter_beats_wildcard_and_longest_wins() {
        let routes = routes(&[
            ("/...", 0),
            ("/users/...", 1),
            ("/users/admin", 2),
            ("/users/:id/edit", 3),
            ("/one/two/...", 4),
            ("/", 5),
        ]);
        assert_eq!(component_for(&routes, "/"), Some(5));
        assert_eq!(component_for(&routes, "/shop"), Some(0));
        assert_eq!(component_for(&routes, "/users"), Some(1));
        assert_eq!(component_for(&routes, "/users/7"), Some(1));
        assert_eq!(component_for(&routes, "/users/admin"), Some(2));
        assert_eq!(component_for(&routes, "/users/7/edit"), Some(3));
        assert_eq!(component_for(&routes, "/users/7/edit/more"), Some(1));
        assert_eq!(component_for(&routes, "/one/two/three"), Some(4));
        assert_eq!(component_for(&routes, "/one/three"), Some(0));
    }

    #[test]
    fn exact_routes_match_nothing_else() {
        let routes = routes(&[("/cart", 0)]);
        assert_eq!(component_for(&routes, "/cart"), Some(0));
        assert_eq!(component_for(&routes, "/cart/checkout"), None);
        assert_eq!(component_for(&routes, "/"), None);
    }

    #[test]
    fn a_match_says_what_spin_says() {
        let routes = routes(&[("/users/:userid/cart/...", 0)]);
        let found = routes.find("/users/1/cart/items/3/edit").expect("matches");
        assert_eq!(found.route, "/users/:userid/cart/...");
        assert_eq!(found.prefix, "/users/:userid/cart");
        assert_eq!(found.path_info, "/items/3/edit");
        assert_eq!(found.params, [("userid".to_owned(), "1".to_owned())]);
        let headers = found.spin_headers("http://example.com/users/1/cart/items/3/edit");
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.to_str().unwrap().to_owned())
        };
        assert_eq!(header("spin-path-info").as_deref(), Some("/items/3/edit"));
        assert_eq!(header("spin-path-match-userid").as_deref(), Some("1"));
        assert_eq!(
            header("spin-component-route").as_deref(),
            Some("/users/:userid/cart")
        );
        assert_eq!(
            header("spin-full-url").as_deref(),
            Some("http://example.com/users/1/cart/items/3/edit")
        );
        assert_eq!(routes.find("/users/1/cart").unwrap().path_info, "");
        assert_eq!(routes.find("/users/1/cart/").unwrap().path_info, "/");
        assert_eq!(routes.find("/users/1/cart/a/").unwrap().path_info, "/a/");
    }
}
