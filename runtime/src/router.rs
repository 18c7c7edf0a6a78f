//! Path → endpoint table: exact paths in a hash map, patterns with `{name}` parameters in a
//! list tried most specific first.

use std::collections::HashMap;

use crate::endpoint::{Accept, Accepting, Endpoint};

#[derive(Clone, Copy)]
pub(crate) struct Route {
    pub(crate) name: &'static str,
    pub(crate) accept: fn(Accept) -> Accepting,
    pub(crate) protocols: &'static [&'static str],
    pub(crate) max_message_size: Option<usize>,
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

/// The path parameters of a matched request, in the pattern's order, percent-decoded.
pub(crate) type Params = Vec<(&'static str, String)>;

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
                accept: E::accept,
                protocols: E::PROTOCOLS,
                max_message_size: E::MAX_MESSAGE_SIZE,
            },
        );
    }

    fn insert(&mut self, path: &'static str, route: Route) {
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
        // Most literal segments first: `/rooms/lobby` wins over `/rooms/{room}`.
        self.patterns.sort_by_key(|p| {
            std::cmp::Reverse(
                p.segments
                    .iter()
                    .filter(|s| matches!(s, Segment::Literal(_)))
                    .count(),
            )
        });
    }

    /// The endpoint for a request path, with its path parameters.
    pub(crate) fn find(&self, path: &str) -> Option<(Route, Params)> {
        if let Some(route) = self.exact.get(path) {
            return Some((*route, Vec::new()));
        }
        let rest = path.strip_prefix('/')?;
        'patterns: for pattern in &self.patterns {
            let mut params = Params::new();
            let mut parts = rest.split('/');
            for segment in &pattern.segments {
                let Some(part) = parts.next() else {
                    continue 'patterns;
                };
                match segment {
                    Segment::Literal(text) if *text == part => {}
                    Segment::Literal(_) => continue 'patterns,
                    Segment::Param(_) if part.is_empty() => continue 'patterns,
                    Segment::Param(name) => params.push((name, percent_decode(part))),
                }
            }
            if parts.next().is_none() {
                return Some((pattern.route, params));
            }
        }
        None
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

/// Decodes `%XX` escapes; invalid escapes stay as they are, invalid UTF-8 is replaced.
pub(crate) fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
                    accept: |_| unreachable!(),
                    protocols: &[],
                    max_message_size: None,
                },
            );
        }
        router
    }

    fn find(router: &Router, path: &str) -> Option<(&'static str, Params)> {
        router
            .find(path)
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
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
    }
}
