//! Documents: the content types accepted, the size limit, and whether an upload's first
//! bytes are what its declared type says ("magic bytes"), so a script cannot be stored as
//! a PDF; statuses, categories, names and the byte ranges a content read answers.

use crate::ApiError;

/// Default largest upload (`DOCARE_DOCUMENT_MAX_BYTES` overrides it).
pub const DEFAULT_MAX_BYTES: u64 = 25 << 20;

/// The content types a document may have, each with the bytes it starts with.
pub const ALLOWED_TYPES: &[(&str, &[&[u8]])] = &[
    ("application/pdf", &[b"%PDF-"]),
    ("image/png", &[b"\x89PNG\r\n\x1a\n"]),
    ("image/jpeg", &[b"\xff\xd8\xff"]),
    // Plain text has no magic; it must at least not look like a binary.
    ("text/plain", &[]),
];

/// The allowed content types alone (what a document's bytes are served as).
pub const CONTENT_TYPES: &[&str] = &["application/pdf", "image/png", "image/jpeg", "text/plain"];

/// Whether `content_type` is on the allow list.
pub fn is_allowed(content_type: &str) -> bool {
    ALLOWED_TYPES.iter().any(|(t, _)| *t == content_type)
}

/// Why an upload was refused after it arrived (the record's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The scanner found a signature.
    Malware,
    /// The scanner could not scan all of it (over its limits).
    Unscannable,
    /// Not the size declared when the upload was requested.
    SizeMismatch,
    /// The first bytes do not match the declared content type.
    TypeMismatch,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malware => "malware",
            RejectReason::Unscannable => "unscannable",
            RejectReason::SizeMismatch => "size_mismatch",
            RejectReason::TypeMismatch => "type_mismatch",
        }
    }
}

/// How many leading bytes [`content_matches`] looks at.
pub const SNIFF_LEN: usize = 512;

/// Whether the first bytes of an upload (up to [`SNIFF_LEN`]) fit its declared type.
pub fn content_matches(content_type: &str, head: &[u8]) -> bool {
    let Some((_, magics)) = ALLOWED_TYPES.iter().find(|(t, _)| *t == content_type) else {
        return false;
    };
    if magics.is_empty() {
        // text/plain: no NUL bytes, and valid UTF-8 up to a character cut at the end.
        if head.contains(&0) {
            return false;
        }
        return match std::str::from_utf8(head) {
            Ok(_) => true,
            Err(err) => err.error_len().is_none(),
        };
    }
    magics.iter().any(|magic| head.starts_with(magic))
}

/// Where a document is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "DocumentStatus")]
pub enum Status {
    /// Created; the upload URL is out, nothing has arrived yet.
    PendingUpload,
    /// The upload arrived and is being scanned.
    Scanning,
    /// Clean and as declared: sealed in the documents bucket, readable.
    Available,
    /// Refused after it arrived (`reason` says why); its bytes are deleted.
    Rejected,
    /// Deleted by its owner (soft: purged later).
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingUpload => "pending_upload",
            Status::Scanning => "scanning",
            Status::Available => "available",
            Status::Rejected => "rejected",
            Status::Deleted => "deleted",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "pending_upload" => Status::PendingUpload,
            "scanning" => Status::Scanning,
            "available" => Status::Available,
            "rejected" => Status::Rejected,
            "deleted" => Status::Deleted,
            _ => return None,
        })
    }

    /// Still waiting for the scanner (an S3 event may still be on its way).
    pub fn is_open(self) -> bool {
        matches!(self, Status::PendingUpload | Status::Scanning)
    }
}

/// The categories a document is filed under (lists filter by one).
pub const CATEGORIES: &[&str] = &[
    "lab_result",
    "imaging",
    "prescription",
    "referral",
    "insurance",
    "identification",
    "consent",
    "other",
];

/// A category on the list, or a 400 naming the field.
pub fn category(value: &str) -> Result<&str, ApiError> {
    CATEGORIES
        .iter()
        .find(|c| **c == value)
        .copied()
        .ok_or_else(|| ApiError::validation(format!("category: one of {}", CATEGORIES.join(", "))))
}

/// A content type on the allow list, or a 400 naming the field.
pub fn content_type(value: &str) -> Result<&str, ApiError> {
    ALLOWED_TYPES
        .iter()
        .find(|(t, _)| *t == value)
        .map(|(t, _)| *t)
        .ok_or_else(|| {
            let allowed: Vec<&str> = ALLOWED_TYPES.iter().map(|(t, _)| *t).collect();
            ApiError::validation(format!("content_type: one of {}", allowed.join(", ")))
        })
}

/// Longest file name kept, in characters (it is sealed: PHI).
pub const MAX_NAME_CHARS: usize = 255;

/// A file name: 1 to [`MAX_NAME_CHARS`] printable characters, no path separators.
pub fn name(value: &str) -> Result<&str, ApiError> {
    let value = crate::domain::text::bounded("name", value, MAX_NAME_CHARS)?;
    if value.contains(['/', '\\']) {
        return Err(ApiError::validation(
            "name: a file name, without '/' or '\\'",
        ));
    }
    Ok(value)
}

/// The declared size: 1 byte to the configured limit; 413 above it.
pub fn declared_size(size: u64, limit: u64) -> Result<u64, ApiError> {
    if size == 0 {
        return Err(ApiError::validation("size: at least 1 byte"));
    }
    if size > limit {
        return Err(ApiError::unprocessable(format!(
            "size: at most {limit} bytes"
        )));
    }
    Ok(size)
}

/// How long an upload URL lives.
pub const UPLOAD_URL_SECS: u64 = 15 * 60;
/// How long a record waits for its upload and scan before it expires (TTL), with the
/// quarantine bucket's lifecycle rule removing any object left behind.
pub const PENDING_TTL_SECS: i64 = 24 * 60 * 60;

/// The most bytes one content read answers: a Lambda response carries at most 6 MB and
/// a binary body travels base64-encoded (4 MiB become 5.6 MB).
pub const MAX_READ_BYTES: u64 = 4 << 20;

/// A byte range of a document to answer, `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
    /// Whether the client asked for a range (206) or for the whole document (200, when
    /// it fits in one read).
    pub partial: bool,
}

/// Why a `Range` header cannot be served (416, with the size in `Content-Range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// The range a content read answers, from the request's `Range` header (one
/// `bytes=start-end`, `bytes=start-` or `bytes=-suffix` range) and the document's size.
/// Without a header: the whole document when it fits in [`MAX_READ_BYTES`], else its
/// first [`MAX_READ_BYTES`] as a partial answer; a range longer than that is cut to it
/// (the answer's `Content-Range` says which bytes came). A header that is not one bytes
/// range (another unit, several ranges) is ignored, as HTTP allows: the rule without a
/// header applies.
pub fn read_range(header: Option<&str>, size: u64) -> Result<ByteRange, Unsatisfiable> {
    let whole = || {
        if size <= MAX_READ_BYTES {
            ByteRange {
                start: 0,
                end: size,
                partial: false,
            }
        } else {
            ByteRange {
                start: 0,
                end: MAX_READ_BYTES,
                partial: true,
            }
        }
    };
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else {
        return Ok(whole());
    };
    if spec.contains(',') {
        return Ok(whole());
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(whole());
    };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => {
            let n = number(last).ok_or(Unsatisfiable)?;
            if n == 0 || size == 0 {
                return Err(Unsatisfiable);
            }
            (size.saturating_sub(n), size)
        }
        (false, true) => (number(first).ok_or(Unsatisfiable)?, size),
        (false, false) => {
            let (a, b) = (number(first), number(last));
            match (a, b) {
                (Some(a), Some(b)) if a <= b => (a, b.saturating_add(1).min(size)),
                _ => return Err(Unsatisfiable),
            }
        }
        (true, true) => return Err(Unsatisfiable),
    };
    if start >= size {
        return Err(Unsatisfiable);
    }
    Ok(ByteRange {
        start,
        end: end.min(start + MAX_READ_BYTES),
        partial: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_are_checked_against_the_bytes() {
        assert!(content_matches("application/pdf", b"%PDF-1.7\n..."));
        assert!(!content_matches(
            "application/pdf",
            b"<script>alert(1)</script>"
        ));
        assert!(!content_matches("application/pdf", b""));
        assert!(content_matches(
            "image/png",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"
        ));
        assert!(!content_matches("image/png", b"\xff\xd8\xff\xe0"));
        assert!(content_matches("image/jpeg", b"\xff\xd8\xff\xe0"));
        assert!(content_matches(
            "text/plain",
            "Blutdruck 120/80 ü".as_bytes()
        ));
        // A multi-byte character cut by the sniff window is still text.
        assert!(content_matches("text/plain", &"ü".as_bytes()[..1]));
        assert!(!content_matches("text/plain", b"MZ\x90\0\x03"));
        assert!(!content_matches("text/html", b"<html>"));
        assert!(!is_allowed("application/x-msdownload"));
        let listed: Vec<&str> = ALLOWED_TYPES.iter().map(|(t, _)| *t).collect();
        assert_eq!(listed, CONTENT_TYPES);
    }

    #[test]
    fn ranges_are_cut_to_one_read() {
        const M: u64 = MAX_READ_BYTES;
        let r = |h: Option<&str>, size| read_range(h, size).map(|r| (r.start, r.end, r.partial));
        assert_eq!(r(None, 10), Ok((0, 10, false)));
        assert_eq!(r(None, M), Ok((0, M, false)));
        assert_eq!(r(None, M + 1), Ok((0, M, true)));
        assert_eq!(r(Some("bytes=0-9"), 100), Ok((0, 10, true)));
        assert_eq!(r(Some("bytes=90-"), 100), Ok((90, 100, true)));
        assert_eq!(r(Some("bytes=-5"), 100), Ok((95, 100, true)));
        assert_eq!(r(Some("bytes=-500"), 100), Ok((0, 100, true)));
        assert_eq!(r(Some("bytes=50-1000"), 100), Ok((50, 100, true)));
        assert_eq!(r(Some("bytes=1-"), 3 * M), Ok((1, M + 1, true)));
        assert_eq!(r(Some("bytes=100-"), 100), Err(Unsatisfiable));
        assert_eq!(r(Some("bytes=9-3"), 100), Err(Unsatisfiable));
        assert_eq!(r(Some("bytes=x-3"), 100), Err(Unsatisfiable));
        assert_eq!(r(Some("bytes=-0"), 100), Err(Unsatisfiable));
        assert_eq!(r(Some("items=0-3"), 100), Ok((0, 100, false)));
    }

    #[test]
    fn names_categories_and_sizes() {
        assert!(name("lab results 2026.pdf").is_ok());
        for bad in ["", "   ", "../etc/passwd", "a\\b", "x\u{7}"] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
        assert!(name(&"n".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(category("lab_result").is_ok());
        assert!(category("LAB_RESULT").is_err());
        assert!(content_type("image/png").is_ok());
        assert!(content_type("text/html").is_err());
        assert!(declared_size(0, 10).is_err());
        assert!(declared_size(11, 10).is_err());
        assert_eq!(declared_size(10, 10).ok(), Some(10));
        for status in [
            Status::PendingUpload,
            Status::Scanning,
            Status::Available,
            Status::Rejected,
            Status::Deleted,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }
}
