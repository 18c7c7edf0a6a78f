//! Percent-decoding (RFC 3986 §2.1), for request paths and query components.

/// Decodes `%XX` escapes (invalid escapes stay as they are); `None` if the result is not
/// UTF-8.
pub(crate) fn decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| Some(hex_value(hex[0])? << 4 | hex_value(hex[1])?));
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
    String::from_utf8(out).ok()
}

/// Decodes one query component (`application/x-www-form-urlencoded`: `+` is a space); text
/// whose escapes are not UTF-8 stays as it is.
pub(crate) fn decode_component(text: &str) -> String {
    let text = text.replace('+', " ");
    decode(&text).unwrap_or(text)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(decode("a%2Fb%zz%").unwrap(), "a/b%zz%");
        assert_eq!(decode("caf%C3%A9").unwrap(), "café");
        assert_eq!(decode("%+1x").unwrap(), "%+1x"); // not an escape
        assert_eq!(decode("%FF"), None);
    }

    #[test]
    fn query_components_read_plus_as_space() {
        assert_eq!(decode_component("ada+lovelace%21"), "ada lovelace!");
        assert_eq!(decode_component("%FF"), "%FF");
    }
}
