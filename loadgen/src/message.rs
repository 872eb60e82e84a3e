//! Message content: unique per message, cheap to make and to check.
//!
//! A message of S bytes is the first S bytes of
//!
//! ```text
//! connection id (u32 LE) ‖ sequence number (u64 LE) ‖ pattern[seq % 256 ..]
//! ```
//!
//! where `pattern` is pseudo-random, drawn once per connection. The header
//! makes every message unique (for S ≥ 12); the sliding window over the
//! pattern makes neighbouring messages differ in every byte position, so a
//! stale, reordered, truncated or corrupted echo does not compare equal.
//! Making a message is two small copies; checking it is a `memcmp`-style
//! comparison against the same source, without building the expected bytes.

/// Bytes of the header (connection id and sequence number).
pub const HEADER_LEN: usize = 12;
/// Distinct offsets into the pattern.
const SLIDE: usize = 256;

/// Makes and checks the messages of one connection.
#[derive(Debug, Clone)]
pub struct Messages {
    conn: u32,
    size: usize,
    pattern: Vec<u8>,
}

impl Messages {
    /// Messages of `size` bytes for connection `conn`.
    pub fn new(conn: u32, size: usize) -> Messages {
        // SplitMix64 seeded by the connection id: a different pattern per connection.
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (u64::from(conn) << 17);
        let mut pattern = Vec::with_capacity(size + SLIDE + 8);
        while pattern.len() < size + SLIDE {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            pattern.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        Messages { conn, size, pattern }
    }

    fn header(&self, seq: u64) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&self.conn.to_le_bytes());
        header[4..].copy_from_slice(&seq.to_le_bytes());
        header
    }

    fn body(&self, seq: u64, len: usize) -> &[u8] {
        let offset = (seq % SLIDE as u64) as usize;
        &self.pattern[offset..offset + len]
    }

    /// Writes message `seq` into `out` (exactly `size` bytes long).
    pub fn fill(&self, seq: u64, out: &mut [u8]) {
        debug_assert_eq!(out.len(), self.size);
        let header = self.header(seq);
        let head = self.size.min(HEADER_LEN);
        out[..head].copy_from_slice(&header[..head]);
        if self.size > HEADER_LEN {
            out[HEADER_LEN..].copy_from_slice(self.body(seq, self.size - HEADER_LEN));
        }
    }

    /// The connection (flow) id and sequence number an echo claims to be,
    /// from its header; `None` when it is too short to hold one. A datagram
    /// echo is matched to its message by this, then checked with
    /// [`Messages::matches`]: a corrupted header claims the wrong message
    /// and fails that check.
    pub fn header_of(echo: &[u8]) -> Option<(u32, u64)> {
        let conn = echo.get(..4)?.try_into().ok().map(u32::from_le_bytes)?;
        let seq = echo.get(4..HEADER_LEN)?.try_into().ok().map(u64::from_le_bytes)?;
        Some((conn, seq))
    }

    /// Is `echo` exactly message `seq`?
    pub fn matches(&self, seq: u64, echo: &[u8]) -> bool {
        if echo.len() != self.size {
            return false;
        }
        let header = self.header(seq);
        let head = self.size.min(HEADER_LEN);
        echo[..head] == header[..head]
            && (self.size <= HEADER_LEN || echo[HEADER_LEN..] == *self.body(seq, self.size - HEADER_LEN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_matches_itself_only() {
        for size in [1, 11, 12, 13, 64, 4096] {
            let messages = Messages::new(7, size);
            let mut a = vec![0u8; size];
            let mut b = vec![0u8; size];
            messages.fill(1000, &mut a);
            messages.fill(1001, &mut b);
            assert!(messages.matches(1000, &a));
            if size >= HEADER_LEN {
                assert!(!messages.matches(1001, &a), "size {size}: neighbours must differ");
                assert_ne!(a, b);
            }
            let last = size - 1;
            a[last] ^= 1;
            assert!(!messages.matches(1000, &a), "size {size}: a flipped byte must be caught");
        }
    }

    #[test]
    fn the_header_names_the_message() {
        let messages = Messages::new(42, 64);
        let mut out = vec![0u8; 64];
        messages.fill(1 << 40, &mut out);
        assert_eq!(Messages::header_of(&out), Some((42, 1 << 40)));
        assert_eq!(Messages::header_of(&out[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn connections_differ() {
        let (mut a, mut b) = (vec![0u8; 64], vec![0u8; 64]);
        Messages::new(1, 64).fill(5, &mut a);
        Messages::new(2, 64).fill(5, &mut b);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
    }
}
