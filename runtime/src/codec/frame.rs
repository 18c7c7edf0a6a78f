//! WebSocket frames (RFC 6455 §5.2): the header, opcodes and masking.

/// A frame's opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    pub(crate) fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub(crate) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    /// RSV1: the message is compressed (permessage-deflate).
    pub(crate) rsv1: bool,
    pub(crate) opcode: OpCode,
    pub(crate) mask: Option<[u8; 4]>,
    pub(crate) len: u64,
}

/// Why a header is refused: each is a protocol error (1002).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    ReservedBits,
    UnknownOpcode,
}

/// The longest header: 2 bytes, 8 of length, 4 of mask.
pub(crate) const MAX_HEADER: usize = 14;

impl Header {
    /// Parses a header from the start of `bytes`: `Ok(None)` if more bytes are needed,
    /// otherwise the header and its length.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
        let [first, second, ..] = *bytes else {
            return Ok(None);
        };
        if first & 0x30 != 0 {
            return Err(HeaderError::ReservedBits);
        }
        let opcode = OpCode::from_bits(first & 0x0F).ok_or(HeaderError::UnknownOpcode)?;
        let masked = second & 0x80 != 0;
        let (len, mut at) = match second & 0x7F {
            126 => match bytes.get(2..4) {
                Some(len) => (u64::from(u16::from_be_bytes([len[0], len[1]])), 4),
                None => return Ok(None),
            },
            127 => match bytes.get(2..10) {
                Some(len) => (u64::from_be_bytes(len.try_into().expect("8 bytes")), 10),
                None => return Ok(None),
            },
            len => (u64::from(len), 2),
        };
        let mask = if masked {
            let Some(key) = bytes.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some(key.try_into().expect("4 bytes"))
        } else {
            None
        };
        Ok(Some((
            Header {
                fin: first & 0x80 != 0,
                rsv1: first & 0x40 != 0,
                opcode,
                mask,
                len,
            },
            at,
        )))
    }

    /// Writes the header into `out`; returns its length.
    pub(crate) fn encode(&self, out: &mut [u8; MAX_HEADER]) -> usize {
        out[0] = (u8::from(self.fin) << 7) | (u8::from(self.rsv1) << 6) | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

/// XORs `bytes` with the mask `key`, starting `offset` bytes into the payload (so a payload
/// can be unmasked piece by piece).
pub(crate) fn apply_mask(bytes: &mut [u8], key: [u8; 4], offset: usize) {
    unmask(bytes, key, offset);
}

/// `apply_mask`, which also says whether the unmasked bytes are all ASCII (most text is, and
/// then needs no further UTF-8 check). Sixteen bytes at a time.
pub(crate) fn unmask(bytes: &mut [u8], key: [u8; 4], offset: usize) -> bool {
    // The key as it stands `offset` bytes in: rotated by whole bytes, then repeated.
    let key = u32::from_le_bytes(key).rotate_right(8 * (offset % 4) as u32);
    let wide = u128::from(key) * 0x0000_0001_0000_0001_0000_0001_0000_0001;
    let mut chunks = bytes.chunks_exact_mut(16);
    let ascii = unmask_chunks(&mut chunks, wide);
    let mut tail_high = 0u8;
    for (byte, mask) in chunks.into_remainder().iter_mut().zip(wide.to_le_bytes()) {
        *byte ^= mask;
        tail_high |= *byte;
    }
    ascii && tail_high & 0x80 == 0
}

/// Unmasks whole sixteen-byte chunks with SSE2 (every x86-64 has it): one XOR and one OR per
/// chunk. Whether every byte was ASCII.
#[cfg(target_arch = "x86_64")]
fn unmask_chunks(chunks: &mut std::slice::ChunksExactMut<'_, u8>, wide: u128) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_setzero_si128,
        _mm_storeu_si128, _mm_xor_si128,
    };
    let bytes = wide.to_le_bytes();
    // SAFETY: SSE2 is part of x86-64; every load and store is of one whole 16-byte chunk
    // (unaligned loads and stores, so any address is fine).
    unsafe {
        let key = _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>());
        let mut high = _mm_setzero_si128();
        for chunk in chunks {
            let at = chunk.as_mut_ptr().cast::<__m128i>();
            let word = _mm_xor_si128(_mm_loadu_si128(at), key);
            _mm_storeu_si128(at, word);
            high = _mm_or_si128(high, word);
        }
        _mm_movemask_epi8(high) == 0
    }
}

/// Unmasks whole sixteen-byte chunks, as one 128-bit word each. Whether every byte was ASCII.
#[cfg(not(target_arch = "x86_64"))]
fn unmask_chunks(chunks: &mut std::slice::ChunksExactMut<'_, u8>, wide: u128) -> bool {
    let mut high = 0u128;
    for chunk in chunks {
        let word = u128::from_le_bytes((&*chunk).try_into().expect("16 bytes")) ^ wide;
        high |= word;
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    high & 0x8080_8080_8080_8080_8080_8080_8080_8080 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_at_every_length_form() {
        for len in [0u64, 125, 126, 65_535, 65_536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let header = Header {
                    fin: len % 2 == 0,
                    rsv1: true,
                    opcode: OpCode::Binary,
                    mask,
                    len,
                };
                let mut bytes = [0u8; MAX_HEADER];
                let n = header.encode(&mut bytes);
                assert_eq!(Header::parse(&bytes[..n]), Ok(Some((header, n))));
                // Any shorter prefix asks for more.
                for short in 0..n {
                    assert_eq!(Header::parse(&bytes[..short]), Ok(None), "{len} {short}");
                }
            }
        }
    }

    #[test]
    fn reserved_bits_and_unknown_opcodes_are_refused() {
        assert_eq!(Header::parse(&[0x90, 0]), Err(HeaderError::ReservedBits));
        assert_eq!(Header::parse(&[0xA0, 0]), Err(HeaderError::ReservedBits));
        assert_eq!(Header::parse(&[0x83, 0]), Err(HeaderError::UnknownOpcode));
        assert_eq!(Header::parse(&[0x8B, 0]), Err(HeaderError::UnknownOpcode));
    }

    #[test]
    fn masking_is_the_same_in_one_piece_or_many() {
        let key = [0x11, 0x22, 0x33, 0x44];
        let original: Vec<u8> = (0..100u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        for (i, byte) in whole.iter().enumerate() {
            assert_eq!(*byte, original[i] ^ key[i % 4]);
        }
        let mut pieces = original.clone();
        let (mut at, mut step) = (0, 1);
        while at < pieces.len() {
            let end = (at + step).min(pieces.len());
            apply_mask(&mut pieces[at..end], key, at);
            at = end;
            step += 3;
        }
        assert_eq!(pieces, whole);
    }

    /// Unmasking tells whether the bytes are ASCII, wherever a high bit is: in a whole
    /// 16-byte word or in the tail.
    #[test]
    fn unmasking_tells_ascii() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in [0, 1, 15, 16, 17, 64, 70] {
            for high in (0..len).map(Some).chain([None]) {
                let mut plain = vec![b'a'; len];
                if let Some(at) = high {
                    plain[at] = 0xC3;
                }
                let mut masked = plain.clone();
                apply_mask(&mut masked, key, 0);
                let ascii = unmask(&mut masked, key, 0);
                assert_eq!(masked, plain);
                assert_eq!(ascii, high.is_none(), "len {len}, high byte at {high:?}");
            }
        }
    }
}
