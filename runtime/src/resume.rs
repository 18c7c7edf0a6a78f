//! Where a resuming client was in its topics: the `wsock-resume` parameter of its upgrade,
//! read before any extractor runs (see docs/protocol.md's "Resume").

/// The query parameter a resuming client gives its positions in.
pub(crate) const QUERY_KEY: &str = "wsock-resume";

/// The most topics one resume names.
pub(crate) const MAX_TOPICS: usize = 64;

/// Where a resuming client was, per topic: from the upgrade's `wsock-resume` parameter.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Resume {
    positions: Vec<(String, String, u64)>,
}

impl Resume {
    /// The positions in a request's query, if it names any; what cannot be read is refused
    /// (with the reason, for the 400).
    pub(crate) fn from_query(query: Option<&str>) -> Result<Resume, String> {
        let Some(query) = query else {
            return Ok(Resume::default());
        };
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|error| format!("the query does not decode: {error}"))?;
        let mut given = pairs.into_iter().filter(|(key, _)| key == QUERY_KEY);
        let Some((_, value)) = given.next() else {
            return Ok(Resume::default());
        };
        if given.next().is_some() {
            return Err(format!("`{QUERY_KEY}` is given twice"));
        }
        let positions: Vec<(String, String, u64)> =
            serde_json::from_str(&value).map_err(|error| {
                format!(
                    "`{QUERY_KEY}` must be a JSON array of [topic, epoch, offset] \
                     (like [[\"room:lobby\",\"3f9c01d2a87e6b45\",41]]): {error}"
                )
            })?;
        if positions.len() > MAX_TOPICS {
            return Err(format!(
                "`{QUERY_KEY}` names {} topics; at most {MAX_TOPICS}",
                positions.len()
            ));
        }
        for (i, (topic, _, _)) in positions.iter().enumerate() {
            if positions[..i].iter().any(|(other, _, _)| other == topic) {
                return Err(format!("`{QUERY_KEY}` names the topic {topic:?} twice"));
            }
        }
        Ok(Resume { positions })
    }

    /// Every topic the client names, with its epoch and the last offset it got.
    pub(crate) fn positions(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.positions
            .iter()
            .map(|(topic, epoch, offset)| (topic.as_str(), epoch.as_str(), *offset))
    }

    /// Where the client was in `topic`: its epoch and the last offset it got.
    pub(crate) fn position(&self, topic: &str) -> Option<(&str, u64)> {
        self.positions
            .iter()
            .find(|(name, _, _)| name == topic)
            .map(|(_, epoch, offset)| (epoch.as_str(), *offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_positions_are_read_or_refused() {
        // (The integration tests encode as a browser's `encodeURIComponent` does.)
        let query = |value: &str| {
            let encoded = serde_urlencoded::to_string([(QUERY_KEY, value)]).unwrap();
            format!("a=1&{encoded}")
        };
        let resume =
            Resume::from_query(Some(&query(r#"[["room:lobby","abc",41],["b","e",0]]"#))).unwrap();
        assert_eq!(resume.position("room:lobby"), Some(("abc", 41)));
        assert_eq!(resume.position("b"), Some(("e", 0)));
        assert_eq!(resume.position("c"), None);
        assert_eq!(Resume::from_query(None).unwrap(), Resume::default());
        assert_eq!(Resume::from_query(Some("a=1")).unwrap(), Resume::default());
        for bad in [
            "{}",
            "[[\"t\",\"e\",-1]]",
            "[[\"t\",\"e\"]]",
            "[[\"t\",\"e\",1.5]]",
            "[[\"t\",\"e\",99999999999999999999999]]",
            "[[\"t\",\"e\",1],[\"t\",\"f\",2]]",
            "not json",
        ] {
            let refused = Resume::from_query(Some(&query(bad))).unwrap_err();
            assert!(refused.contains(QUERY_KEY), "{bad}: {refused}");
        }
        let many: Vec<String> = (0..=MAX_TOPICS)
            .map(|i| format!("[\"t{i}\",\"e\",1]"))
            .collect();
        let refused =
            Resume::from_query(Some(&query(&format!("[{}]", many.join(","))))).unwrap_err();
        assert!(refused.contains("at most 64"), "{refused}");
        let twice = format!("{}&{}", query("[]"), query("[]"));
        assert!(
            Resume::from_query(Some(&twice))
                .unwrap_err()
                .contains("twice")
        );
    }
}
