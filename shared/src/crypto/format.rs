//! The field ciphertext formats: compact, self-describing, and bound to the place
//! they were written for.
//!
//! ```text
//! offset  size  field
//! 0       1     version: 0x01 (data key) or 0x02 (branch key)
//! 1       16    key id (ULID): v1 names the wrapped data-key record, v2 the branch key
//!               (one per purpose and calendar month, see [`super::keyring`]); either
//!               record names the KMS key that wraps it, so keys can rotate
//! 17      16    message id (random): HKDF salt, so no two values share an AES key
//! 33      12    nonce (random, 96 bits)
//! 45      n+16  AES-256-GCM ciphertext and tag
//! ```
//!
//! The AES key of each value is HKDF-SHA-256(key, salt = message id, info =
//! `docare/field/v1` or `docare/field/v2`), never the data or branch key itself. The
//! associated data binds the version, the key id, the table, the item key and the
//! attribute name: a ciphertext copied to another record, attribute or table fails its
//! tag check. Version 1 uses RustCrypto's `aes-gcm`; version 2 aws-lc-rs (the faster
//! AES-256-GCM of the two on this hardware, see the README's Benchmarks); both compute
//! the same AES-256-GCM.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Values sealed under a per-instance data key (`DATAKEY#<id>`).
pub const VERSION: u8 = 1;
/// Values sealed under a branch key (one per purpose and month, [`super::keyring`]).
pub const VERSION_BRANCH: u8 = 2;
pub const DATA_KEY_ID_LEN: usize = 16;
const MESSAGE_ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes a ciphertext adds to its plaintext.
pub const OVERHEAD: usize = 1 + DATA_KEY_ID_LEN + MESSAGE_ID_LEN + NONCE_LEN + TAG_LEN;
/// Largest plaintext we seal (documents included); larger input is refused unread.
pub const MAX_PLAINTEXT: usize = 32 * 1024 * 1024;
const HKDF_INFO: &[u8] = b"docare/field/v1";
const HKDF_INFO_BRANCH: &[u8] = b"docare/field/v2";
const AAD_LABEL: &[u8] = b"docare-field";

/// Where a value lives: the associated data of its ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    pub table: &'a str,
    pub pk: &'a str,
    pub sk: &'a str,
    pub attribute: &'a str,
}

/// Why a ciphertext was refused. No variant carries any plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("unsupported ciphertext version {0}")]
    UnknownVersion(u8),
    #[error("malformed ciphertext")]
    Malformed,
    #[error("ciphertext too large")]
    TooLarge,
    /// Wrong key, tampered bytes, or a ciphertext moved to another place.
    #[error("ciphertext failed its integrity check")]
    Integrity,
}

/// A parsed ciphertext, before decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// [`VERSION`] or [`VERSION_BRANCH`]: which kind of key `data_key_id` names.
    pub version: u8,
    /// The data key (v1) or branch key (v2) the value was sealed under.
    pub data_key_id: [u8; DATA_KEY_ID_LEN],
    message_id: &'a [u8],
    nonce: &'a [u8],
    sealed: &'a [u8],
}

fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part);
}

fn associated_data(
    version: u8,
    data_key_id: &[u8; DATA_KEY_ID_LEN],
    binding: &Binding<'_>,
) -> Vec<u8> {
    let mut aad =
        Vec::with_capacity(64 + binding.table.len() + binding.pk.len() + binding.sk.len());
    push_part(&mut aad, AAD_LABEL);
    aad.push(version);
    aad.extend_from_slice(data_key_id);
    for part in [binding.table, binding.pk, binding.sk, binding.attribute] {
        push_part(&mut aad, part.as_bytes());
    }
    aad
}

fn value_cipher(data_key: &[u8; 32], message_id: &[u8]) -> Result<Aes256Gcm, FormatError> {
    let hkdf = Hkdf::<Sha256>::new(Some(message_id), data_key);
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf.expand(HKDF_INFO, key.as_mut())
        .map_err(|_| FormatError::Malformed)?;
    Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| FormatError::Malformed)
}

/// Encrypts one value under a data key, for one place.
pub fn seal(
    data_key_id: &[u8; DATA_KEY_ID_LEN],
    data_key: &[u8; 32],
    binding: &Binding<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, FormatError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(FormatError::TooLarge);
    }
    let mut message_id = [0u8; MESSAGE_ID_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut message_id);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = value_cipher(data_key, &message_id)?;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &associated_data(VERSION, data_key_id, binding),
            },
        )
        .map_err(|_| FormatError::Malformed)?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(VERSION);
    out.extend_from_slice(data_key_id);
    out.extend_from_slice(&message_id);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The AES-256-GCM key (aws-lc-rs) of one v2 value: HKDF of the branch key.
fn branch_value_key(
    branch_key: &[u8; 32],
    message_id: &[u8],
) -> Result<aws_lc_rs::aead::LessSafeKey, FormatError> {
    use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
    let hkdf = Hkdf::<Sha256>::new(Some(message_id), branch_key);
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf.expand(HKDF_INFO_BRANCH, key.as_mut())
        .map_err(|_| FormatError::Malformed)?;
    UnboundKey::new(&AES_256_GCM, key.as_ref())
        .map(LessSafeKey::new)
        .map_err(|_| FormatError::Malformed)
}

/// Encrypts one value under a branch key (format v2), for one place.
pub fn seal_branch(
    branch_key_id: &[u8; DATA_KEY_ID_LEN],
    branch_key: &[u8; 32],
    binding: &Binding<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, FormatError> {
    use aws_lc_rs::aead::{Aad, Nonce};
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(FormatError::TooLarge);
    }
    let mut message_id = [0u8; MESSAGE_ID_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut message_id);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let key = branch_value_key(branch_key, &message_id)?;
    let header = OVERHEAD - TAG_LEN;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(VERSION_BRANCH);
    out.extend_from_slice(branch_key_id);
    out.extend_from_slice(&message_id);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(VERSION_BRANCH, branch_key_id, binding)),
            &mut out[header..],
        )
        .map_err(|_| FormatError::Malformed)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Reads the header without decrypting: which data key (v1) or branch key (v2) is
/// needed.
pub fn parse(ciphertext: &[u8]) -> Result<Envelope<'_>, FormatError> {
    let (&version, rest) = ciphertext.split_first().ok_or(FormatError::Malformed)?;
    if version != VERSION && version != VERSION_BRANCH {
        return Err(FormatError::UnknownVersion(version));
    }
    if ciphertext.len() > MAX_PLAINTEXT + OVERHEAD {
        return Err(FormatError::TooLarge);
    }
    if ciphertext.len() < OVERHEAD {
        return Err(FormatError::Malformed);
    }
    let (id, rest) = rest.split_at(DATA_KEY_ID_LEN);
    let (message_id, rest) = rest.split_at(MESSAGE_ID_LEN);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let data_key_id = <[u8; DATA_KEY_ID_LEN]>::try_from(id).map_err(|_| FormatError::Malformed)?;
    Ok(Envelope {
        version,
        data_key_id,
        message_id,
        nonce,
        sealed,
    })
}

/// Decrypts a parsed value with the key its header names (a data key for v1, a branch
/// key for v2); any mismatch of key, bytes or place is an integrity error.
pub fn open(
    envelope: &Envelope<'_>,
    data_key: &[u8; 32],
    binding: &Binding<'_>,
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    if envelope.version == VERSION_BRANCH {
        return open_branch(envelope, data_key, binding);
    }
    let cipher = value_cipher(data_key, envelope.message_id)?;
    cipher
        .decrypt(
            Nonce::from_slice(envelope.nonce),
            Payload {
                msg: envelope.sealed,
                aad: &associated_data(VERSION, &envelope.data_key_id, binding),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| FormatError::Integrity)
}

fn open_branch(
    envelope: &Envelope<'_>,
    branch_key: &[u8; 32],
    binding: &Binding<'_>,
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    use aws_lc_rs::aead::{Aad, Nonce};
    let key = branch_value_key(branch_key, envelope.message_id)?;
    let nonce =
        Nonce::try_assume_unique_for_key(envelope.nonce).map_err(|_| FormatError::Malformed)?;
    // Opened in place in a buffer wiped on drop; the plaintext is released only after
    // the tag checked.
    let mut buffer = Zeroizing::new(envelope.sealed.to_vec());
    let len = key
        .open_in_place(
            nonce,
            Aad::from(associated_data(
                VERSION_BRANCH,
                &envelope.data_key_id,
                binding,
            )),
            buffer.as_mut_slice(),
        )
        .map_err(|_| FormatError::Integrity)?
        .len();
    buffer.truncate(len);
    Ok(buffer)
}

/// The oracle of the `ciphertext_parse` fuzz target (`fuzz/`), kept here so that stable
/// tests run the very same checks over mutated inputs. Panics (the fuzzer's signal)
/// when an invariant of the format breaks; never otherwise, whatever the bytes.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const ID: [u8; DATA_KEY_ID_LEN] = [3; DATA_KEY_ID_LEN];
    /// Inputs sealed for the round-trip check are cut to this length, so each fuzz
    /// iteration stays fast; parsing always sees the whole input.
    const MAX_SEALED: usize = 4096;

    fn binding() -> Binding<'static> {
        Binding {
            table: "docare",
            pk: "USER#fuzz",
            sk: "PROFILE",
            attribute: "ssn",
        }
    }

    /// Checks `parse` and `open` on arbitrary bytes, then a seal/open round trip of the
    /// bytes as plaintext, and that one bit flipped (chosen by the input) is refused.
    pub fn ciphertext_parse(data: &[u8]) {
        let at = binding();
        match parse(data) {
            Ok(envelope) => {
                assert!(data.len() >= OVERHEAD && data.len() <= MAX_PLAINTEXT + OVERHEAD);
                assert!(matches!(data.first(), Some(&(VERSION | VERSION_BRANCH))));
                assert_eq!(data.first(), Some(&envelope.version));
                assert_eq!(&envelope.data_key_id[..], &data[1..=DATA_KEY_ID_LEN]);
                // Bytes not sealed under this key and place never authenticate.
                assert_eq!(open(&envelope, &KEY, &at), Err(FormatError::Integrity));
            }
            Err(FormatError::UnknownVersion(version)) => {
                assert_eq!(data.first(), Some(&version));
                assert!(version != VERSION && version != VERSION_BRANCH);
            }
            Err(FormatError::Malformed) => assert!(data.len() < OVERHEAD),
            Err(FormatError::TooLarge) => assert!(data.len() > MAX_PLAINTEXT + OVERHEAD),
            Err(FormatError::Integrity) => panic!("parse reported an integrity error"),
        }

        let plaintext = &data[..data.len().min(MAX_SEALED)];
        let seed = data.iter().fold(data.len(), |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(*b))
        });
        // Both versions: v1 (data key, aes-gcm) and v2 (branch key, aws-lc-rs).
        type Seal = fn(
            &[u8; DATA_KEY_ID_LEN],
            &[u8; 32],
            &Binding<'_>,
            &[u8],
        ) -> Result<Vec<u8>, FormatError>;
        for (version, sealer) in [(VERSION, seal as Seal), (VERSION_BRANCH, seal_branch)] {
            let sealed = match sealer(&ID, &KEY, &at, plaintext) {
                Ok(sealed) => sealed,
                Err(err) => panic!("sealing {} bytes failed: {err}", plaintext.len()),
            };
            assert_eq!(sealed.len(), plaintext.len() + OVERHEAD);
            assert_eq!(sealed.first(), Some(&version));
            match parse(&sealed).and_then(|e| open(&e, &KEY, &at)) {
                Ok(opened) => assert_eq!(opened.as_slice(), plaintext),
                Err(err) => panic!("a sealed value did not open: {err}"),
            }
            let bit = seed % (sealed.len() * 8);
            let mut flipped = sealed;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                parse(&flipped).and_then(|e| open(&e, &KEY, &at)).is_err(),
                "a flipped bit was accepted"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [9; 32];
    const ID: [u8; 16] = [1; 16];

    fn place<'a>(table: &'a str, pk: &'a str, sk: &'a str, attribute: &'a str) -> Binding<'a> {
        Binding {
            table,
            pk,
            sk,
            attribute,
        }
    }

    #[test]
    fn round_trip_and_overhead() {
        let at = place("docare", "USER#1", "PROFILE", "ssn");
        let sealed = seal(&ID, &KEY, &at, b"123-45-6789").expect("seal");
        assert_eq!(sealed.len(), OVERHEAD + 11);
        let envelope = parse(&sealed).expect("parse");
        assert_eq!(envelope.data_key_id, ID);
        assert_eq!(
            open(&envelope, &KEY, &at).expect("open").as_slice(),
            b"123-45-6789"
        );
    }

    #[test]
    fn unknown_versions_and_short_input_are_refused() {
        assert_eq!(parse(&[]), Err(FormatError::Malformed));
        assert_eq!(parse(&[3, 0, 0]), Err(FormatError::UnknownVersion(3)));
        assert_eq!(parse(&[0, 0, 0]), Err(FormatError::UnknownVersion(0)));
        assert_eq!(parse(&[VERSION; OVERHEAD - 1]), Err(FormatError::Malformed));
        assert_eq!(
            parse(&[VERSION_BRANCH; OVERHEAD - 1]),
            Err(FormatError::Malformed)
        );
    }

    /// Seals with v1 or v2, as a proptest picks.
    fn seal_as(branch: bool, at: &Binding<'_>, plaintext: &[u8]) -> Result<Vec<u8>, FormatError> {
        if branch {
            seal_branch(&ID, &KEY, at, plaintext)
        } else {
            seal(&ID, &KEY, at, plaintext)
        }
    }

    #[test]
    fn branch_values_round_trip_with_the_same_overhead() {
        let at = place("docare", "USER#1", "PROFILE", "ssn");
        let sealed = seal_branch(&ID, &KEY, &at, b"123-45-6789").expect("seal");
        assert_eq!(sealed.len(), OVERHEAD + 11);
        let envelope = parse(&sealed).expect("parse");
        assert_eq!(
            (envelope.version, envelope.data_key_id),
            (VERSION_BRANCH, ID)
        );
        assert_eq!(
            open(&envelope, &KEY, &at).expect("open").as_slice(),
            b"123-45-6789"
        );
        assert_eq!(
            open(&envelope, &[8; 32], &at),
            Err(FormatError::Integrity),
            "another branch key"
        );
    }

    #[test]
    fn a_value_relabelled_to_the_other_version_fails() {
        // The version is in the associated data and picks the HKDF info: a v1 value
        // presented as v2 (or the other way round) never opens, even under the same key.
        let at = place("docare", "USER#1", "PROFILE", "ssn");
        for (sealed, other) in [
            (seal(&ID, &KEY, &at, b"x").expect("v1"), VERSION_BRANCH),
            (seal_branch(&ID, &KEY, &at, b"x").expect("v2"), VERSION),
        ] {
            let mut relabelled = sealed.clone();
            relabelled[0] = other;
            let envelope = parse(&relabelled).expect("parse");
            assert_eq!(open(&envelope, &KEY, &at), Err(FormatError::Integrity));
        }
    }

    proptest! {
        #[test]
        fn a_value_moved_anywhere_else_fails(
            plaintext in proptest::collection::vec(any::<u8>(), 0..256),
            field in 0usize..4,
            other in "[A-Za-z0-9#]{1,12}",
            branch in any::<bool>(),
        ) {
            let (table, pk, sk, attr) = ("docare", "USER#1", "PROFILE", "ssn");
            let at = place(table, pk, sk, attr);
            let sealed = seal_as(branch, &at, &plaintext).expect("seal");
            let mut parts = [table, pk, sk, attr];
            prop_assume!(parts[field] != other);
            parts[field] = &other;
            let moved = place(parts[0], parts[1], parts[2], parts[3]);
            let envelope = parse(&sealed).expect("parse");
            prop_assert_eq!(open(&envelope, &KEY, &moved), Err(FormatError::Integrity));
            prop_assert!(open(&envelope, &KEY, &at).is_ok());
        }

        #[test]
        fn any_flipped_bit_fails(
            plaintext in proptest::collection::vec(any::<u8>(), 1..64),
            bit in any::<usize>(),
            branch in any::<bool>(),
        ) {
            let at = place("t", "p", "s", "a");
            let mut sealed = seal_as(branch, &at, &plaintext).expect("seal");
            let bit = bit % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            let outcome = parse(&sealed).and_then(|e| open(&e, &KEY, &at));
            prop_assert!(outcome.is_err());
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes).map(|e| open(&e, &KEY, &place("t", "p", "s", "a")));
        }
    }

    /// Stable stand-in for the fuzzer: the fuzz target's oracle over a corpus of valid
    /// ciphertexts and their mutations (truncations, extensions, bit flips, byte
    /// overwrites, other versions), plus random bytes from proptest below.
    #[test]
    fn the_fuzz_oracle_holds_over_mutated_ciphertexts() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x00d0_ca4e);
        let at = place("docare", "USER#fuzz", "PROFILE", "ssn");
        let mut corpus: Vec<Vec<u8>> = vec![vec![], vec![VERSION], vec![0; OVERHEAD]];
        for len in [0usize, 1, 15, 16, 17, 32, 100, 1000] {
            let plaintext: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            corpus.push(seal(&ID, &KEY, &at, &plaintext).expect("seal"));
            corpus.push(seal_branch(&ID, &KEY, &at, &plaintext).expect("seal v2"));
        }
        let mut cases = 0;
        for base in &corpus {
            fuzzing::ciphertext_parse(base);
            for _ in 0..200 {
                let mut input = base.clone();
                match rng.gen_range(0..5) {
                    0 if !input.is_empty() => input.truncate(rng.gen_range(0..input.len())),
                    1 => input.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>())),
                    2 if !input.is_empty() => {
                        let bit = rng.gen_range(0..input.len() * 8);
                        input[bit / 8] ^= 1 << (bit % 8);
                    }
                    3 if !input.is_empty() => {
                        let at = rng.gen_range(0..input.len());
                        input[at] = rng.gen();
                    }
                    _ => match input.first_mut() {
                        Some(version) => *version = rng.gen(),
                        None => input.push(rng.gen()),
                    },
                }
                fuzzing::ciphertext_parse(&input);
                cases += 1;
            }
        }
        assert_eq!(cases, corpus.len() * 200);
    }

    proptest! {
        #[test]
        fn the_fuzz_oracle_holds_for_random_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            fuzzing::ciphertext_parse(&bytes);
        }
    }
}
