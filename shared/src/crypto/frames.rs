//! Framed document encryption (format `DCF1`): a document is sealed as a stream of
//! 64 KiB frames, each authenticated on its own, so it is encrypted and decrypted with
//! bounded memory (one frame) whatever its size, and a ranged read opens only the frames
//! it needs.
//!
//! ```text
//! header (37 bytes)
//! 0       4     magic "DCF1"
//! 4       1     version (0x01)
//! 5       16    data key id (ULID of the KMS-wrapped data key record)
//! 21      16    document salt (random): HKDF salt, so every document has its own AES key
//! frames
//! ...     n+16  AES-256-GCM(frame plaintext) and tag; n = 65,536 except for the last
//!               frame, which holds the remaining 0..=65,536 bytes (0 only when empty)
//! ```
//!
//! The AES key is HKDF-SHA-256(data key, salt = document salt, info = "docare/document/v1").
//! Since that key is unique per document, the nonce is the frame index (96-bit big
//! endian), never repeated under one key. The associated data of each frame binds the
//! format version, the data key id, the document id, the frame index and whether it is
//! the last frame: a flipped byte, a frame moved, two frames swapped, a frame taken from
//! another document or a document cut short (the frame before the cut was not sealed as
//! the last one) all fail with [`FrameError::Integrity`]. A frame's plaintext is released
//! only after its tag has been checked.
//!
//! AES-GCM is aws-lc-rs's (AES-NI/VAES and CLMUL/VPCLMULQDQ assembly); frames are sealed
//! in place, without a copy.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::format::DATA_KEY_ID_LEN;

pub const MAGIC: &[u8; 4] = b"DCF1";
pub const VERSION: u8 = 1;
/// Plaintext bytes per frame.
pub const FRAME_LEN: usize = 64 * 1024;
pub const TAG_LEN: usize = 16;
/// A sealed full frame.
pub const SEALED_FRAME_LEN: usize = FRAME_LEN + TAG_LEN;
const SALT_LEN: usize = 16;
pub const HEADER_LEN: usize = MAGIC.len() + 1 + DATA_KEY_ID_LEN + SALT_LEN;
const HKDF_INFO: &[u8] = b"docare/document/v1";
const AAD_LABEL: &[u8] = b"docare-document";

/// Why a framed document was refused. No variant carries plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a framed document (bad header)")]
    Malformed,
    #[error("unsupported framed document version {0}")]
    UnknownVersion(u8),
    /// Tampered, truncated, reordered or foreign frames, or the wrong key.
    #[error("framed document failed its integrity check")]
    Integrity,
}

/// The clear header: which data key opens the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub data_key_id: [u8; DATA_KEY_ID_LEN],
    salt: [u8; SALT_LEN],
}

impl Header {
    fn new(data_key_id: [u8; DATA_KEY_ID_LEN]) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Self { data_key_id, salt }
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5..5 + DATA_KEY_ID_LEN].copy_from_slice(&self.data_key_id);
        out[5 + DATA_KEY_ID_LEN..].copy_from_slice(&self.salt);
        out
    }

    /// Parses the first [`HEADER_LEN`] bytes of a framed document.
    pub fn parse(bytes: &[u8]) -> Result<Self, FrameError> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(FrameError::Malformed);
        }
        if bytes[4] != VERSION {
            return Err(FrameError::UnknownVersion(bytes[4]));
        }
        let mut data_key_id = [0u8; DATA_KEY_ID_LEN];
        data_key_id.copy_from_slice(&bytes[5..5 + DATA_KEY_ID_LEN]);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[5 + DATA_KEY_ID_LEN..HEADER_LEN]);
        Ok(Self { data_key_id, salt })
    }
}

/// Number of frames of a document of `size` plaintext bytes (an empty one has one).
pub fn frame_count(size: u64) -> u64 {
    size.div_ceil(FRAME_LEN as u64).max(1)
}

/// Size of the sealed object of a document of `size` bytes.
pub fn sealed_len(size: u64) -> u64 {
    HEADER_LEN as u64 + size + frame_count(size) * TAG_LEN as u64
}

/// Byte range (start, end exclusive) of frame `index` in the sealed object of a document
/// of `size` bytes: what a ranged read fetches.
pub fn frame_range(size: u64, index: u64) -> (u64, u64) {
    let start = HEADER_LEN as u64 + index * SEALED_FRAME_LEN as u64;
    let plain = size
        .saturating_sub(index * FRAME_LEN as u64)
        .min(FRAME_LEN as u64);
    (start, start + plain + TAG_LEN as u64)
}

/// The AEAD of one document plus what its frames are bound to.
struct DocumentCipher {
    key: LessSafeKey,
    aad_prefix: Vec<u8>,
}

impl DocumentCipher {
    fn new(header: &Header, data_key: &[u8; 32], document_id: &str) -> Result<Self, FrameError> {
        let hkdf = Hkdf::<Sha256>::new(Some(&header.salt), data_key);
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf.expand(HKDF_INFO, key.as_mut())
            .map_err(|_| FrameError::Malformed)?;
        let unbound =
            UnboundKey::new(&AES_256_GCM, key.as_ref()).map_err(|_| FrameError::Malformed)?;
        let mut aad_prefix = Vec::with_capacity(64 + document_id.len());
        aad_prefix.extend_from_slice(&(AAD_LABEL.len() as u32).to_be_bytes());
        aad_prefix.extend_from_slice(AAD_LABEL);
        aad_prefix.push(VERSION);
        aad_prefix.extend_from_slice(&header.data_key_id);
        aad_prefix.extend_from_slice(&(document_id.len() as u32).to_be_bytes());
        aad_prefix.extend_from_slice(document_id.as_bytes());
        Ok(Self {
            key: LessSafeKey::new(unbound),
            aad_prefix,
        })
    }

    fn nonce(index: u64) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&index.to_be_bytes());
        Nonce::assume_unique_for_key(nonce)
    }

    fn aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.aad_prefix.len() + 9);
        aad.extend_from_slice(&self.aad_prefix);
        aad.extend_from_slice(&index.to_be_bytes());
        aad.push(u8::from(last));
        aad
    }

    /// Seals `frame` in place and appends it and its tag to `out`.
    fn seal(&self, index: u64, last: bool, frame: &mut [u8], out: &mut Vec<u8>) {
        let aad = self.aad(index, last);
        match self.key.seal_in_place_separate_tag(
            Self::nonce(index),
            Aad::from(aad.as_slice()),
            frame,
        ) {
            Ok(tag) => {
                out.extend_from_slice(frame);
                out.extend_from_slice(tag.as_ref());
            }
            // Only an input over GCM's 64 GiB bound fails; a frame never is.
            Err(_) => unreachable_tag(),
        }
    }

    /// Opens a sealed frame (ciphertext and tag) in place; the plaintext prefix.
    fn open<'a>(
        &self,
        index: u64,
        last: bool,
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], FrameError> {
        if sealed.len() < TAG_LEN || sealed.len() > SEALED_FRAME_LEN {
            return Err(FrameError::Integrity);
        }
        let aad = self.aad(index, last);
        self.key
            .open_in_place(Self::nonce(index), Aad::from(aad.as_slice()), sealed)
            .map(|plain| &mut plain[..])
            .map_err(|_| FrameError::Integrity)
    }
}

#[cold]
fn unreachable_tag() -> ! {
    // `seal_in_place_separate_tag` fails only past 2^36 bytes per call.
    panic!("AES-GCM refused a 64 KiB frame")
}

/// Encrypts a document as it streams in: feed it plaintext with [`Sealer::update`], then
/// [`Sealer::finish`]. Holds at most one frame.
pub struct Sealer {
    cipher: DocumentCipher,
    index: u64,
    pending: Vec<u8>,
    header: Option<[u8; HEADER_LEN]>,
}

impl Sealer {
    /// A sealer for `document_id` under a data key (from [`super::Envelope::data_key`]).
    pub fn new(
        data_key_id: [u8; DATA_KEY_ID_LEN],
        data_key: &[u8; 32],
        document_id: &str,
    ) -> Result<Self, FrameError> {
        let header = Header::new(data_key_id);
        Ok(Self {
            cipher: DocumentCipher::new(&header, data_key, document_id)?,
            index: 0,
            pending: Vec::with_capacity(FRAME_LEN + 1),
            header: Some(header.to_bytes()),
        })
    }

    fn take_header(&mut self, out: &mut Vec<u8>) {
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header);
        }
    }

    /// Appends the header (first call) and every frame known not to be the last.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        self.take_header(out);
        while !input.is_empty() {
            // A full frame is sealed only once a byte past it is seen: until then it
            // may be the last one.
            if self.pending.len() == FRAME_LEN {
                let index = self.index;
                self.cipher.seal(index, false, &mut self.pending, out);
                self.pending.clear();
                self.index += 1;
            }
            let room = FRAME_LEN - self.pending.len();
            let take = room.min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
    }

    /// Seals the last frame (possibly empty) and returns the final bytes.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.take_header(out);
        let index = self.index;
        let mut pending = std::mem::take(&mut self.pending);
        self.cipher.seal(index, true, &mut pending, out);
        zeroize::Zeroize::zeroize(&mut pending);
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.pending);
    }
}

/// Decrypts a framed document as it streams in. The header is read first
/// ([`Header::parse`] tells which data key is needed); then feed the rest (or all of it,
/// header included, with [`Opener::update`] after [`Opener::new`] from the header).
pub struct Opener {
    cipher: DocumentCipher,
    index: u64,
    /// Header bytes still to skip.
    skip: usize,
    pending: Vec<u8>,
}

impl Opener {
    /// An opener for the document whose header is `header`; the bytes passed to
    /// [`Opener::update`] start with that header.
    pub fn new(
        header: &Header,
        data_key: &[u8; 32],
        document_id: &str,
    ) -> Result<Self, FrameError> {
        Ok(Self {
            cipher: DocumentCipher::new(header, data_key, document_id)?,
            index: 0,
            skip: HEADER_LEN,
            pending: Vec::with_capacity(SEALED_FRAME_LEN + 1),
        })
    }

    /// Appends the plaintext of every frame that is complete and known not to be the
    /// last. An integrity failure leaves nothing of the failing frame in `out`.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        let skip = self.skip.min(input.len());
        input = &input[skip..];
        self.skip -= skip;
        while !input.is_empty() {
            if self.pending.len() == SEALED_FRAME_LEN {
                self.open_pending(false, out)?;
            }
            let room = SEALED_FRAME_LEN - self.pending.len();
            let take = room.min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
        Ok(())
    }

    fn open_pending(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let index = self.index;
        let plain = self.cipher.open(index, last, &mut self.pending)?;
        out.extend_from_slice(plain);
        self.pending.clear();
        self.index += 1;
        Ok(())
    }

    /// Opens the last frame. A document cut short fails here.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        if self.skip > 0 {
            return Err(FrameError::Malformed);
        }
        self.open_pending(true, out)
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.pending);
    }
}

/// Opens one frame read on its own (a ranged read): `sealed` is the bytes of
/// [`frame_range`]`(size, index)`, `size` the document's plaintext size (from its
/// record, not from the object).
pub fn open_frame(
    header: &Header,
    data_key: &[u8; 32],
    document_id: &str,
    size: u64,
    index: u64,
    sealed: &mut [u8],
) -> Result<Vec<u8>, FrameError> {
    let cipher = DocumentCipher::new(header, data_key, document_id)?;
    let last = index + 1 == frame_count(size);
    if index >= frame_count(size) {
        return Err(FrameError::Integrity);
    }
    cipher.open(index, last, sealed).map(|plain| plain.to_vec())
}

/// Seals a whole document held in memory (tests, small inputs).
pub fn seal_all(
    data_key_id: [u8; DATA_KEY_ID_LEN],
    data_key: &[u8; 32],
    document_id: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, FrameError> {
    let mut sealer = Sealer::new(data_key_id, data_key, document_id)?;
    let mut out = Vec::with_capacity(sealed_len(plaintext.len() as u64) as usize);
    sealer.update(plaintext, &mut out);
    sealer.finish(&mut out);
    Ok(out)
}

/// Opens a whole document held in memory.
pub fn open_all(
    data_key: &[u8; 32],
    document_id: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let header = Header::parse(sealed)?;
    let mut opener = Opener::new(&header, data_key, document_id)?;
    let mut out = Zeroizing::new(Vec::with_capacity(sealed.len()));
    opener.update(sealed, &mut out)?;
    opener.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [9; 32];
    const KEY_ID: [u8; DATA_KEY_ID_LEN] = [4; DATA_KEY_ID_LEN];
    const DOC: &str = "01JDOCUMENT0000000000000000";

    fn document(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_at_frame_boundaries() {
        for len in [
            0,
            1,
            FRAME_LEN - 1,
            FRAME_LEN,
            FRAME_LEN + 1,
            3 * FRAME_LEN,
            3 * FRAME_LEN + 17,
        ] {
            let plain = document(len);
            let sealed = seal_all(KEY_ID, &KEY, DOC, &plain).expect("seal");
            assert_eq!(sealed.len() as u64, sealed_len(len as u64), "len {len}");
            assert_eq!(
                open_all(&KEY, DOC, &sealed).expect("open").as_slice(),
                &plain[..]
            );
            assert_eq!(Header::parse(&sealed).expect("header").data_key_id, KEY_ID);
        }
    }

    #[test]
    fn no_plaintext_in_the_sealed_object() {
        let plain = b"%PDF-1.7 the patient's diagnosis ".repeat(4000);
        let sealed = seal_all(KEY_ID, &KEY, DOC, &plain).expect("seal");
        assert!(!sealed
            .windows(16)
            .any(|w| plain.windows(16).take(64).any(|p| p == w)));
        // Two seals of one document differ (per-document salt, so per-document key).
        assert_ne!(sealed, seal_all(KEY_ID, &KEY, DOC, &plain).expect("seal"));
    }

    #[test]
    fn a_flipped_byte_fails_anywhere() {
        let plain = document(2 * FRAME_LEN + 100);
        let sealed = seal_all(KEY_ID, &KEY, DOC, &plain).expect("seal");
        for at in [
            HEADER_LEN - 1, // the salt: another key
            HEADER_LEN,
            HEADER_LEN + SEALED_FRAME_LEN - 1, // a tag
            HEADER_LEN + SEALED_FRAME_LEN + 5,
            sealed.len() - 1,
        ] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            assert_eq!(
                open_all(&KEY, DOC, &bad).map(|_| ()),
                Err(FrameError::Integrity),
                "byte {at}"
            );
        }
        let mut bad = sealed.clone();
        bad[6] ^= 1; // the data key id is bound too
        assert_eq!(
            open_all(&KEY, DOC, &bad).map(|_| ()),
            Err(FrameError::Integrity)
        );
    }

    #[test]
    fn truncation_reordering_and_foreign_frames_fail() {
        let plain = document(3 * FRAME_LEN + 10);
        let sealed = seal_all(KEY_ID, &KEY, DOC, &plain).expect("seal");
        let frame = |i: usize| {
            let start = HEADER_LEN + i * SEALED_FRAME_LEN;
            sealed[start..(start + SEALED_FRAME_LEN).min(sealed.len())].to_vec()
        };
        // The last frame dropped: the third full frame was not sealed as the last.
        let dropped = sealed[..HEADER_LEN + 3 * SEALED_FRAME_LEN].to_vec();
        assert_eq!(
            open_all(&KEY, DOC, &dropped).map(|_| ()),
            Err(FrameError::Integrity)
        );
        // Cut inside a frame.
        assert_eq!(
            open_all(&KEY, DOC, &sealed[..sealed.len() - 3]).map(|_| ()),
            Err(FrameError::Integrity)
        );
        // Only the header left.
        assert_eq!(
            open_all(&KEY, DOC, &sealed[..HEADER_LEN]).map(|_| ()),
            Err(FrameError::Integrity)
        );
        // Two frames swapped.
        let mut swapped = sealed[..HEADER_LEN].to_vec();
        for i in [1, 0, 2, 3] {
            swapped.extend_from_slice(&frame(i));
        }
        assert_eq!(
            open_all(&KEY, DOC, &swapped).map(|_| ()),
            Err(FrameError::Integrity)
        );
        // A frame duplicated in place of another.
        let mut duplicated = sealed[..HEADER_LEN].to_vec();
        for i in [0, 0, 2, 3] {
            duplicated.extend_from_slice(&frame(i));
        }
        assert_eq!(
            open_all(&KEY, DOC, &duplicated).map(|_| ()),
            Err(FrameError::Integrity)
        );
        // Another document's id, another data key.
        assert_eq!(
            open_all(&KEY, "01JOTHERDOCUMENT00000000000", &sealed).map(|_| ()),
            Err(FrameError::Integrity)
        );
        assert_eq!(
            open_all(&[8; 32], DOC, &sealed).map(|_| ()),
            Err(FrameError::Integrity)
        );
        // Bad headers.
        assert_eq!(
            open_all(&KEY, DOC, b"DCF").map(|_| ()),
            Err(FrameError::Malformed)
        );
        let mut v2 = sealed.clone();
        v2[4] = 2;
        assert_eq!(
            open_all(&KEY, DOC, &v2).map(|_| ()),
            Err(FrameError::UnknownVersion(2))
        );
    }

    #[test]
    fn ranged_reads_open_single_frames() {
        let size = 2 * FRAME_LEN + 7;
        let plain = document(size);
        let sealed = seal_all(KEY_ID, &KEY, DOC, &plain).expect("seal");
        let header = Header::parse(&sealed).expect("header");
        for index in 0..frame_count(size as u64) {
            let (start, end) = frame_range(size as u64, index);
            let mut bytes = sealed[start as usize..end as usize].to_vec();
            let opened =
                open_frame(&header, &KEY, DOC, size as u64, index, &mut bytes).expect("frame");
            let from = index as usize * FRAME_LEN;
            assert_eq!(opened, plain[from..(from + FRAME_LEN).min(size)]);
        }
        // A size that lies (one frame fewer) makes the real last frame... not last.
        let (start, end) = frame_range(size as u64, 1);
        let mut bytes = sealed[start as usize..end as usize].to_vec();
        assert_eq!(
            open_frame(&header, &KEY, DOC, 2 * FRAME_LEN as u64, 1, &mut bytes),
            Err(FrameError::Integrity)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        // Any chunking of the input, on either side, gives the same bytes.
        #[test]
        fn streaming_in_any_chunks_matches(len in 0usize..(3 * FRAME_LEN), chunk in 1usize..100_000) {
            let plain = document(len);
            let mut sealer = Sealer::new(KEY_ID, &KEY, DOC).expect("sealer");
            let mut sealed = Vec::new();
            for part in plain.chunks(chunk) {
                sealer.update(part, &mut sealed);
            }
            sealer.finish(&mut sealed);
            prop_assert_eq!(sealed.len() as u64, sealed_len(len as u64));
            let header = Header::parse(&sealed).expect("header");
            let mut opener = Opener::new(&header, &KEY, DOC).expect("opener");
            let mut out = Vec::new();
            for part in sealed.chunks(chunk.max(3)) {
                opener.update(part, &mut out).expect("update");
            }
            opener.finish(&mut out).expect("finish");
            prop_assert_eq!(out, plain);
        }
    }
}
