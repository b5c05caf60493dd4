//! Documents: the content types accepted, the size limit, and whether an upload's first
//! bytes are what its declared type says ("magic bytes"), so a script cannot be stored as
//! a PDF.

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
    }
}
