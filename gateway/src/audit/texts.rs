//! Long texts stored once: an ORM or a retrying agent sends the same long statement thousands
//! of times, and each event would otherwise keep its own copy.
//!
//! An event whose longest JSON string is at least [`MIN`] bytes is stored with that string cut
//! out: the `texts` table keeps the cut bytes once, zstd-compressed, under their sha256, and the
//! event row keeps `0x00 ‖ sha256 ‖ offset ‖ length ‖ the rest`. Reading puts the bytes back
//! ([`expand`]) before anything hashes or decodes them, so the chain still covers the whole
//! event exactly as it was written: a text changed in `texts` shows as its events being changed.
//! (Canonical event bytes are JSON and start with `{`, never `0x00`.)
//!
//! [`super::schema::TEXT_LAST`] holds, per text, the newest event using it, so retention removes a text when the
//! last event that used it goes.

use std::borrow::Cow;
use std::io::Read;
use std::ops::Range;

use redb::ReadableTable;

use super::AuditError;
use super::chain::Hash;
use super::schema::TEXTS;

/// Shorter strings stay in their event: the reference (44 bytes) and the table rows would cost
/// about what they save.
pub const MIN: usize = 512;

const MARK: u8 = 0;
const HEADER: usize = 1 + 32 + 4 + 4;
/// Most bytes one stored text may expand to; only stops a forged row from exhausting memory.
const MAX_TEXT: usize = 256 << 20;

/// Where the text to store once is, in an event's canonical bytes: the contents of its longest
/// JSON string, when that is long enough. Any range would do for correctness (the bytes are put
/// back exactly where they were cut); the longest string is where the repetition is.
pub(crate) fn long_text(bytes: &[u8]) -> Option<Range<usize>> {
    let mut best: Option<Range<usize>> = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        while j < bytes.len() && bytes[j] != b'"' {
            j += if bytes[j] == b'\\' { 2 } else { 1 };
        }
        if j >= bytes.len() {
            break;
        }
        if best.as_ref().is_none_or(|b| j - start > b.len()) {
            best = Some(start..j);
        }
        i = j + 1;
    }
    best.filter(|range| range.len() >= MIN)
}

/// The row an event is stored as, cutting `range` out; the text's digest.
pub(crate) fn compact(bytes: &[u8], range: Range<usize>) -> (Vec<u8>, Hash) {
    let digest: Hash = <sha2::Sha256 as sha2::Digest>::digest(&bytes[range.clone()]).into();
    let mut row = Vec::with_capacity(HEADER + bytes.len() - range.len());
    row.push(MARK);
    row.extend_from_slice(&digest);
    row.extend_from_slice(&(range.start as u32).to_le_bytes());
    row.extend_from_slice(&(range.len() as u32).to_le_bytes());
    row.extend_from_slice(&bytes[..range.start]);
    row.extend_from_slice(&bytes[range.end..]);
    (row, digest)
}

/// How a text is kept in [`TEXTS`].
pub(crate) fn store_text(text: &[u8]) -> Result<Vec<u8>, AuditError> {
    Ok(zstd::bulk::compress(text, 3)?)
}

/// An event's canonical bytes from its stored row: the row itself, or the row with its text put
/// back. `texts` is `None` for a database written before texts were stored once.
pub(crate) fn expand<'a, T>(row: &'a [u8], texts: Option<&T>) -> Result<Cow<'a, [u8]>, AuditError>
where
    T: ReadableTable<Hash, &'static [u8]>,
{
    if row.first() != Some(&MARK) {
        return Ok(Cow::Borrowed(row));
    }
    let damaged = |what: &str| AuditError::Corrupt(format!("a stored event's text {what}"));
    if row.len() < HEADER {
        return Err(damaged("reference is cut short"));
    }
    let digest: Hash = row[1..33].try_into().map_err(|_| damaged("reference"))?;
    let offset = u32::from_le_bytes([row[33], row[34], row[35], row[36]]) as usize;
    let len = u32::from_le_bytes([row[37], row[38], row[39], row[40]]) as usize;
    let rest = &row[HEADER..];
    if offset > rest.len() || len > MAX_TEXT {
        return Err(damaged("reference is out of range"));
    }
    let stored = texts
        .map(|t| t.get(digest))
        .transpose()?
        .flatten()
        .ok_or_else(|| damaged(&format!("{} is missing", hex::encode(digest))))?;
    let mut text = Vec::with_capacity(len);
    zstd::stream::read::Decoder::new(stored.value())
        .and_then(|d| d.take(len as u64 + 1).read_to_end(&mut text))
        .map_err(|e| damaged(&format!("{} cannot be read: {e}", hex::encode(digest))))?;
    if text.len() != len {
        return Err(damaged("does not have its recorded length"));
    }
    let mut bytes = Vec::with_capacity(rest.len() + len);
    bytes.extend_from_slice(&rest[..offset]);
    bytes.extend_from_slice(&text);
    bytes.extend_from_slice(&rest[offset..]);
    Ok(Cow::Owned(bytes))
}

/// [`TEXTS`] in a read transaction, `None` in a database that predates it.
pub(crate) fn open_texts(
    txn: &redb::ReadTransaction,
) -> Result<Option<redb::ReadOnlyTable<Hash, &'static [u8]>>, AuditError> {
    match txn.open_table(TEXTS) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_string_is_found_whatever_it_contains() {
        let long = format!(r#"select '\"{}' -- \\"#, "x".repeat(600));
        let event =
            serde_json::json!({"seq": 1, "type": "command", "command": long, "kind": "select"});
        let bytes = serde_json::to_vec(&event).unwrap();
        let range = long_text(&bytes).unwrap();
        let escaped = serde_json::to_string(&long).unwrap();
        assert_eq!(
            &bytes[range.clone()],
            &escaped.as_bytes()[1..escaped.len() - 1]
        );
        let short = serde_json::to_vec(&serde_json::json!({"command": "select 1"})).unwrap();
        assert_eq!(long_text(&short), None);
    }

    #[test]
    fn a_compacted_row_expands_to_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let text = "y".repeat(4000);
        let bytes = format!(r#"{{"seq":7,"command":"{text}","kind":"select"}}"#).into_bytes();
        let range = long_text(&bytes).unwrap();
        let (row, digest) = compact(&bytes, range.clone());
        assert!(row.len() < 100);
        let txn = db.begin_write().unwrap();
        {
            let mut texts = txn.open_table(TEXTS).unwrap();
            // Missing: an error, not a panic or a wrong event.
            assert!(expand(&row, Some(&texts)).is_err());
            let stored = store_text(&bytes[range]).unwrap();
            texts.insert(digest, stored.as_slice()).unwrap();
            assert_eq!(expand(&row, Some(&texts)).unwrap(), bytes.as_slice());
            // A plain row is its own bytes.
            assert!(matches!(
                expand(b"{\"seq\":1}", Some(&texts)).unwrap(),
                Cow::Borrowed(_)
            ));
            // A forged reference out of range.
            let mut forged = row.clone();
            forged[33..37].copy_from_slice(&u32::MAX.to_le_bytes());
            assert!(expand(&forged, Some(&texts)).is_err());
            assert!(expand(&row[..20], Some(&texts)).is_err());
        }
        txn.commit().unwrap();
    }
}
