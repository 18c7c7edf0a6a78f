//! UTF-8 checked as a text message's bytes arrive, so that an invalid prefix of a large frame
//! closes the connection (1007) without waiting for the rest.

/// The state between pieces: the start of a code point the last piece left unfinished.
#[derive(Default, Debug)]
pub(crate) struct Utf8 {
    pending: [u8; 4],
    len: u8,
}

/// The bytes are not UTF-8, whatever may follow.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid;

impl Utf8 {
    /// Checks the next piece of the message.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Invalid> {
        if self.len > 0 {
            let need = width(self.pending[0]);
            let take = (need - usize::from(self.len)).min(bytes.len());
            let mut buf = [0u8; 4];
            let have = usize::from(self.len);
            buf[..have].copy_from_slice(&self.pending[..have]);
            buf[have..have + take].copy_from_slice(&bytes[..take]);
            let joined = &buf[..have + take];
            match std::str::from_utf8(joined) {
                Ok(_) => self.len = 0,
                Err(error) if error.error_len().is_none() => {
                    // Still unfinished: this piece was too short to finish it.
                    self.pending[..joined.len()].copy_from_slice(joined);
                    self.len = joined.len() as u8;
                    return Ok(());
                }
                Err(_) => return Err(Invalid),
            }
            bytes = &bytes[take..];
        }
        if bytes.is_ascii() {
            // Most text is: this check is a few instructions per 8 bytes.
            return Ok(());
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(error) if error.error_len().is_none() => {
                let tail = &bytes[error.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }

    /// The message ends here: no code point may be left unfinished.
    pub(crate) fn finish(&mut self) -> Result<(), Invalid> {
        let unfinished = self.len > 0;
        self.len = 0;
        if unfinished { Err(Invalid) } else { Ok(()) }
    }
}

/// How many bytes the code point that `lead` starts takes (1 for a byte that starts none:
/// `from_utf8` then says it is invalid).
fn width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of cutting a text in pieces gives the same verdict as checking it whole.
    #[test]
    fn any_split_agrees_with_the_whole() {
        let samples: [&[u8]; 8] = [
            "héllo wörld €𝄞".as_bytes(),
            b"a\xC3",
            b"a\xC3\x28b",
            b"\xF0\x9F\x98",
            b"\xF0\x9F\x98\x80",
            b"\xED\xA0\x80",
            b"\xFF",
            b"\xE2\x82",
        ];
        for sample in samples {
            let whole = std::str::from_utf8(sample).is_ok();
            for cut in 0..=sample.len() {
                for cut2 in cut..=sample.len() {
                    let mut utf8 = Utf8::default();
                    let verdict = utf8
                        .feed(&sample[..cut])
                        .and_then(|()| utf8.feed(&sample[cut..cut2]))
                        .and_then(|()| utf8.feed(&sample[cut2..]))
                        .and_then(|()| utf8.finish())
                        .is_ok();
                    assert_eq!(verdict, whole, "{sample:?} cut at {cut} and {cut2}");
                }
            }
        }
    }

    /// An invalid byte is reported at once, before the message ends.
    #[test]
    fn an_invalid_prefix_is_refused_at_once() {
        let mut utf8 = Utf8::default();
        assert_eq!(utf8.feed(b"ok so far \xFF"), Err(Invalid));
        let mut utf8 = Utf8::default();
        assert_eq!(utf8.feed(b"\xC3"), Ok(()));
        assert_eq!(utf8.feed(b"\x28"), Err(Invalid));
    }
}
