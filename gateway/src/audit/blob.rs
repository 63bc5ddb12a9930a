//! Bounded space: recording chunks stored zstd-compressed, and long command texts kept as their
//! head plus a digest.
//!
//! The chain covers plain bytes (a chunk's digest is of what the recorder wrote), so how a chunk
//! is stored can change without touching verification. A stored chunk that starts with zstd's
//! frame magic is a frame; anything else is a chunk written before compression (plain JSON
//! lines, which start with `{`).

use std::io::Read;

use sha2::{Digest, Sha256};

use super::AuditError;
use super::writer::StoredChunk;

/// zstd's frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Fast level: recordings are JSON lines, which compress 5-10× even at level 3, and the cost
/// is paid on the session's recorder task.
const LEVEL: i32 = 3;

/// Most bytes one chunk may expand to: the recorder writes chunks of 64 KiB (one entry can be
/// larger, up to its queue's bound); this only stops a forged chunk from exhausting memory.
const MAX_PLAIN_CHUNK: u64 = 256 << 20;

/// Hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compress a chunk for storage and take the digest its `recording` event chains.
pub(crate) fn store_chunk(session: &str, plain: &[u8]) -> Result<StoredChunk, AuditError> {
    let stored = zstd::bulk::compress(plain, LEVEL)?;
    Ok(StoredChunk {
        session: session.to_owned(),
        stored,
        bytes: plain.len() as u64,
        sha256: sha256_hex(plain),
    })
}

/// The plain bytes of a stored chunk.
pub(crate) fn load_chunk(stored: &[u8]) -> Result<Vec<u8>, AuditError> {
    if !stored.starts_with(&ZSTD_MAGIC) {
        return Ok(stored.to_vec());
    }
    let mut plain = Vec::new();
    zstd::stream::read::Decoder::new(stored)?
        .take(MAX_PLAIN_CHUNK + 1)
        .read_to_end(&mut plain)?;
    if plain.len() as u64 > MAX_PLAIN_CHUNK {
        return Err(AuditError::Corrupt(format!(
            "a recording chunk expands past {} MiB",
            MAX_PLAIN_CHUNK >> 20
        )));
    }
    Ok(plain)
}

/// A command text longer than `cap` bytes is kept as its first and last `cap / 2` bytes (cut
/// at character boundaries) around a marker with the whole text's length and sha256: one 8 MB
/// statement costs the store `cap` bytes, not 8 MB; padding put in front of a statement does not
/// hide what it ends with (nor padding behind it what it starts with); and an auditor can match
/// a copy of the text to its digest.
pub fn cap_text(text: &str, cap: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= cap {
        return text.into();
    }
    let mut head = cap / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - cap / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} … [warden: {} bytes in all, the {} between not kept, sha256 {}] … {}",
        &text[..head],
        text.len(),
        tail - head,
        sha256_hex(text.as_bytes()),
        &text[tail..]
    )
    .into()
}

/// Whether `text` carries [`cap_text`]'s marker: the store kept only its head and tail.
pub fn is_capped(text: &str) -> bool {
    text.contains(" … [warden: ") && text.contains(" bytes in all, the ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_shrink() {
        let plain = br#"{"t":1,"type":"rows","rows":[["4111********1111","alice"]]}"#.repeat(500);
        let chunk = store_chunk("s", &plain).unwrap();
        assert!(
            chunk.stored.len() * 10 < plain.len(),
            "{}",
            chunk.stored.len()
        );
        assert_eq!(chunk.bytes, plain.len() as u64);
        assert_eq!(chunk.sha256, sha256_hex(&plain));
        assert_eq!(load_chunk(&chunk.stored).unwrap(), plain);
    }

    #[test]
    fn chunks_stored_before_compression_still_read() {
        let old = b"{\"t\":0,\"type\":\"start\"}\n";
        assert_eq!(load_chunk(old).unwrap(), old);
    }

    #[test]
    fn a_forged_frame_is_an_error_not_a_panic() {
        let mut bad = ZSTD_MAGIC.to_vec();
        bad.extend_from_slice(b"not a frame at all");
        assert!(load_chunk(&bad).is_err());
    }

    #[test]
    fn long_texts_keep_their_head_tail_and_digest() {
        let text = format!("SELECT '{}' WHERE false", "é".repeat(5000));
        let capped = cap_text(&text, 101);
        assert!(capped.starts_with("SELECT '"));
        assert!(capped.ends_with("' WHERE false"), "{capped}");
        assert!(capped.len() < 300);
        assert!(capped.contains(&format!("{} bytes in all", text.len())));
        assert!(capped.contains(&sha256_hex(text.as_bytes())));
        assert_eq!(cap_text("short", 101), "short");
        // Padding in front does not hide the statement.
        let padded = format!(
            "/* {} */ UPDATE cards SET amount = amount + 1000 WHERE id = 8",
            "x".repeat(20000)
        );
        assert!(
            cap_text(&padded, 4096)
                .ends_with("UPDATE cards SET amount = amount + 1000 WHERE id = 8")
        );
    }
}
