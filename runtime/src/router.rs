//! Path → endpoint table: exact paths in a hash map, patterns with `{name}` parameters in a
//! list tried most specific first.

use std::collections::HashMap;

use crate::endpoint::{Accept, Accepting, Endpoint};
use crate::percent;
use crate::request::Params;

#[derive(Clone, Copy)]
pub(crate) struct Route {
    pub(crate) name: &'static str,
    pub(crate) path: &'static str,
    pub(crate) accept: fn(Accept) -> Accepting,
    pub(crate) protocols: &'static [&'static str],
    pub(crate) max_message_size: Option<usize>,
    pub(crate) compress: bool,
    pub(crate) heartbeat: bool,
    /// Its connections resume their topics (`resume = true`).
    pub(crate) resume: bool,
}

/// One segment of a route pattern.
#[derive(Clone, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

struct Pattern {
    path: &'static str,
    segments: Vec<Segment>,
    route: Route,
}

/// A request path whose percent-escapes do not decode to UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadPath;

#[derive(Default)]
pub(crate) struct Router {
    exact: HashMap<&'static str, Route>,
    patterns: Vec<Pattern>,
}

impl Router {
    /// Adds an endpoint. Two endpoints that match the same paths are a programming error,
    /// reported at startup.
    pub(crate) fn add<E: Endpoint>(&mut self) {
        self.insert(
            E::PATH,
            Route {
                name: E::NAME,
                path: E::PATH,
                accept: E::accept,
                protocols: E::PROTOCOLS,
                max_message_size: E::MAX_MESSAGE_SIZE,
                compress: E::COMPRESS,
                heartbeat: E::HEARTBEAT,
                resume: E::RESUME,
            },
        );
    }

    pub(crate) fn insert(&mut self, path: &'static str, route: Route) {
        let segments = parse(path);
        if !segments.iter().any(|s| matches!(s, Segment::Param(_))) {
            if let Some(existing) = self.exact.insert(path, route) {
                conflict(path, existing.name, route.name);
            }
            return;
        }
        let shape = |segments: &[Segment]| -> Vec<Option<&'static str>> {
            segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(text) => Some(*text),
                    Segment::Param(_) => None,
                })
                .collect()
        };
        if let Some(existing) = self
            .patterns
            .iter()
            .find(|p| shape(&p.segments) == shape(&segments))
        {
            conflict(existing.path, existing.route.name, route.name);
        }
        self.patterns.push(Pattern {
            path,
            segments,
            route,
        });
        // A literal segment wins over a parameter at the first place two patterns differ:
        // `/x/{b}` before `/{a}/x`, whatever the order of registration.
        self.patterns.sort_by(|a, b| {
            let params = |p: &Pattern| -> Vec<bool> {
                p.segments
                    .iter()
                    .map(|s| matches!(s, Segment::Param(_)))
                    .collect()
            };
            params(a).cmp(&params(b))
        });
    }

    /// The endpoint for a request path, with its path parameters. Segments are compared
    /// percent-decoded; a path whose escapes do not decode to UTF-8 is `Err(BadPath)`.
    pub(crate) fn find(&self, path: &str) -> Result<Option<(Route, Params)>, BadPath> {
        if let Some(route) = self.exact.get(path) {
            return Ok(Some((*route, Vec::new())));
        }
        let Some(rest) = path.strip_prefix('/') else {
            return Ok(None);
        };
        let parts: Vec<String> = rest
            .split('/')
            .map(percent::decode)
            .collect::<Option<_>>()
            .ok_or(BadPath)?;
        if path.contains('%')
            && !parts.iter().any(|part| part.contains('/'))
            && let Some(route) = self.exact.get(format!("/{}", parts.join("/")).as_str())
        {
            return Ok(Some((*route, Vec::new())));
        }
        'patterns: for pattern in &self.patterns {
            if pattern.segments.len() != parts.len() {
                continue;
            }
            let mut params = Params::new();
            for (segment, part) in pattern.segments.iter().zip(&parts) {
                match segment {
                    Segment::Literal(text) if text == part => {}
                    Segment::Literal(_) => continue 'patterns,
                    Segment::Param(_) if part.is_empty() => continue 'patterns,
                    Segment::Param(name) => params.push((name, part.clone())),
                }
            }
            return Ok(Some((pattern.route, params)));
        }
        Ok(None)
    }

    /// Every endpoint's path pattern and name, exact paths first.
    pub(crate) fn paths(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        let exact = self.exact.values();
        let patterns = self.patterns.iter().map(|p| &p.route);
        exact.chain(patterns).map(|route| (route.path, route.name))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }
}

fn conflict(path: &str, first: &str, second: &str) -> ! {
    panic!("two websocket endpoints match the path {path:?}: `{first}` and `{second}`")
}

/// `"/rooms/{room}"` → `[Literal("rooms"), Param("room")]`; `#[websocket]` checked the syntax.
fn parse(path: &'static str) -> Vec<Segment> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name),
                None => Segment::Literal(segment),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(paths: &[&'static str]) -> Router {
        let mut router = Router::default();
        for (i, path) in paths.iter().enumerate() {
            router.insert(
                path,
                Route {
                    name: ["a", "b", "c", "d"][i],
                    path,
                    accept: |_| unreachable!(),
                    protocols: &[],
                    max_message_size: None,
                    compress: true,
                    heartbeat: true,
                    resume: false,
                },
            );
        }
        router
    }

    fn find(router: &Router, path: &str) -> Option<(&'static str, Params)> {
        router
            .find(path)
            .unwrap()
            .map(|(route, params)| (route.name, params))
    }

    #[test]
    fn matches_exact_paths_and_patterns() {
        let router = router(&[
            "/",
            "/rooms/{room}",
            "/rooms/{room}/seats/{seat}",
            "/rooms/lobby/x",
        ]);
        assert_eq!(find(&router, "/"), Some(("a", vec![])));
        assert_eq!(
            find(&router, "/rooms/blue"),
            Some(("b", vec![("room", "blue".into())]))
        );
        assert_eq!(
            find(&router, "/rooms/blue/seats/7"),
            Some(("c", vec![("room", "blue".into()), ("seat", "7".into())]))
        );
        assert_eq!(find(&router, "/rooms/lobby/x"), Some(("d", vec![])));
        assert_eq!(
            find(&router, "/rooms/a%20b"),
            Some(("b", vec![("room", "a b".into())]))
        );
        assert_eq!(find(&router, "/rooms"), None);
        assert_eq!(find(&router, "/rooms/"), None);
        assert_eq!(find(&router, "/rooms/blue/seats"), None);
        assert_eq!(find(&router, "/rooms/blue/seats/7/x"), None);
        assert_eq!(find(&router, "rooms/blue"), None);
    }

    #[test]
    #[should_panic(expected = "two websocket endpoints match the path \"/rooms/{room}\"")]
    fn refuses_two_endpoints_for_the_same_paths() {
        router(&["/rooms/{room}", "/rooms/{name}"]);
    }

    #[test]
    fn a_literal_segment_wins_whatever_the_order() {
        for paths in [["/{a}/x", "/x/{b}"], ["/x/{b}", "/{a}/x"]] {
            let router = router(&paths);
            let (name, params) = find(&router, "/x/x").unwrap();
            assert_eq!(params, vec![("b", "x".to_owned())], "{name} for {paths:?}");
        }
    }

    #[test]
    fn segments_compare_decoded() {
        let router = router(&["/rooms/lobby", "/rooms/{room}"]);
        assert_eq!(find(&router, "/rooms/lobb%79"), Some(("a", vec![])));
        assert_eq!(find(&router, "/rooms%2Flobby"), None);
        assert_eq!(router.find("/rooms/%FF").err(), Some(BadPath));
    }
}
