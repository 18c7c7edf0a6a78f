//! What the resume tests share: the `wsock-resume` query parameter a client sends, percent-
//! encoded as a browser's `encodeURIComponent` would.

/// `wsock-resume=<[[topic, epoch, offset], ..] as JSON, percent-encoded>`.
pub fn resume_query(positions: &[(&str, &str, u64)]) -> String {
    let json = serde_json::to_string(positions).expect("positions serialize");
    format!("wsock-resume={}", encode_component(&json))
}

/// Percent-encodes everything but the unreserved characters.
pub fn encode_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
