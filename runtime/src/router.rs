//! Path → endpoint table.

use std::collections::HashMap;

use crate::endpoint::{Accept, Accepting, Endpoint};

#[derive(Clone, Copy)]
pub(crate) struct Route {
    pub(crate) name: &'static str,
    pub(crate) accept: fn(Accept) -> Accepting,
}

#[derive(Default)]
pub(crate) struct Router {
    exact: HashMap<&'static str, Route>,
}

impl Router {
    /// Adds an endpoint; two endpoints on one path is a programming error, reported at startup.
    pub(crate) fn add<E: Endpoint>(&mut self) {
        let route = Route {
            name: E::NAME,
            accept: E::accept,
        };
        if let Some(existing) = self.exact.insert(E::PATH, route) {
            panic!(
                "two websocket endpoints on the path {:?}: `{}` and `{}`",
                E::PATH,
                existing.name,
                E::NAME
            );
        }
    }

    pub(crate) fn find(&self, path: &str) -> Option<Route> {
        self.exact.get(path).copied()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }
}
