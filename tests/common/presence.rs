//! What the presence tests share: a watcher's list, rebuilt from the frames the server sends
//! (`0x1E {"presence":..,"state"|"join"|"leave"|"count":..} 0x1E`).
#![allow(dead_code)]

use std::collections::HashMap;

use serde_json::Value;

/// A watcher's view of a presence: members by key, with their metadata and connections.
#[derive(Default)]
pub struct List {
    pub members: HashMap<String, (Value, u64)>,
    /// The count, for a presence of counts only.
    pub count: Option<u64>,
    /// A long list is coming in several frames.
    continuing: bool,
}

impl List {
    /// Applies one frame (its text, with its `0x1E`s); returns its presence's name.
    pub fn apply(&mut self, text: &str) -> String {
        let json = text
            .strip_prefix('\u{1e}')
            .and_then(|rest| rest.strip_suffix('\u{1e}'))
            .unwrap_or_else(|| panic!("not a presence frame: {text}"));
        let frame: Value = serde_json::from_str(json).unwrap();
        if let Some(count) = frame["count"].as_u64() {
            self.count = Some(count);
        }
        if frame.get("state").is_some() {
            // A long list comes in several frames, all but the last with `more`.
            if !self.continuing {
                self.members.clear();
            }
            self.continuing = frame["more"] == true;
        }
        for kind in ["state", "join"] {
            for member in frame[kind].as_array().into_iter().flatten() {
                let key = member["key"].as_str().unwrap().to_owned();
                let connections = member["connections"].as_u64().unwrap();
                self.members
                    .insert(key, (member["meta"].clone(), connections));
            }
        }
        for key in frame["leave"].as_array().into_iter().flatten() {
            self.members.remove(key.as_str().unwrap());
        }
        frame["presence"].as_str().unwrap_or_default().to_owned()
    }

    /// Keys and connection counts.
    pub fn counts(&self) -> HashMap<String, u64> {
        self.members
            .iter()
            .map(|(key, (_, connections))| (key.clone(), *connections))
            .collect()
    }
}
