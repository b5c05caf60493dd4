//! The key port: data keys bound to an encryption context, re-wrapping for rotation.

use crate::support;
use shared::adapters::aws::Kms;
use shared::adapters::local::LocalKeyring;
use shared::crypto::signing::PublicKey;
use shared::ports::keys::{EncryptionContext, KeyError, KeyService, MAX_SIGN_MESSAGE};
use std::sync::Arc;

pub struct KeyFixture {
    keys: Arc<dyn KeyService>,
    /// Two usable keys, named as the adapter reports them (`DataKey::key_id`).
    key_a: String,
    key_b: String,
    /// An `ECC_NIST_P256` / `SIGN_VERIFY` key.
    signing: String,
    /// A well-formed id of a key that does not exist.
    unknown: String,
    /// Other names of existing keys, and the id each resolves to.
    aliases: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

async fn local_fixture() -> KeyFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let ring = LocalKeyring::open(&dir.path().join("keyring.json")).expect("keyring");
    ring.create_key("local/a").expect("key a");
    ring.create_key("local/b").expect("key b");
    ring.create_signing_key("local/signing")
        .expect("signing key");
    KeyFixture {
        keys: Arc::new(ring),
        key_a: "local/a".into(),
        key_b: "local/b".into(),
        signing: "local/signing".into(),
        unknown: "local/missing".into(),
        aliases: Vec::new(),
        _dir: Some(dir),
    }
}

async fn aws_fixture() -> Option<KeyFixture> {
    let sdk = support::aws()?;
    let client = aws_sdk_kms::Client::new(&sdk);
    let mut arns = Vec::new();
    let mut aliases = Vec::new();
    for _ in 0..2 {
        let created = client
            .create_key()
            .description("docare contract test")
            .send()
            .await
            .expect("create key");
        let metadata = created.key_metadata().expect("metadata");
        let arn = metadata.arn().expect("arn").to_string();
        let alias = format!("alias/{}", support::unique("docare-contract"));
        client
            .create_alias()
            .alias_name(&alias)
            .target_key_id(metadata.key_id())
            .send()
            .await
            .expect("create alias");
        aliases.push((metadata.key_id().to_string(), arn.clone()));
        aliases.push((alias, arn.clone()));
        arns.push(arn);
    }
    let signing = client
        .create_key()
        .description("docare contract test: signing")
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .expect("create signing key")
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("arn")
        .to_string();
    // KMS reports keys by ARN, so the fixture names them by ARN too.
    let unknown = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000";
    Some(KeyFixture {
        keys: Arc::new(Kms::new(client)),
        key_b: arns.pop().expect("key b"),
        key_a: arns.pop().expect("key a"),
        signing,
        unknown: unknown.into(),
        aliases,
        _dir: None,
    })
}

contract_suite! {
    local = local_fixture, aws = aws_fixture;
    both: [
        generate_then_decrypt_roundtrip,
        context_mismatch_is_invalid_ciphertext,
        tampered_ciphertext_is_invalid_ciphertext,
        re_encrypt_to_a_second_key,
        re_encrypt_keeping_the_context_rotates_the_key_only,
        re_encrypt_to_an_unknown_key_is_key_not_found,
        resolve_key_id_names_keys_as_they_are_reported,
        unknown_key_is_key_not_found,
        check_accepts_an_enabled_key,
        sign_returns_raw_es256_that_the_public_key_verifies,
        signing_keys_and_data_keys_do_not_mix,
        signing_with_an_unknown_key_is_key_not_found,
        a_message_over_the_limit_is_refused,
    ];
    local_only: [a_signing_key_cannot_wrap_data_keys];
}

fn context(item: &str) -> EncryptionContext {
    EncryptionContext::new([("table", "docare"), ("item", item), ("purpose", "phi")])
}

async fn generate_then_decrypt_roundtrip(fx: &KeyFixture) {
    let ctx = context("USER#1");
    let data_key = fx
        .keys
        .generate_data_key(&fx.key_a, &ctx)
        .await
        .expect("generate");
    assert_eq!(data_key.key_id, fx.key_a);
    assert_eq!(data_key.plaintext.len(), 32, "a 256-bit key");
    assert!(!data_key.ciphertext.is_empty());
    assert!(
        !data_key
            .ciphertext
            .windows(32)
            .any(|w| w == data_key.plaintext.as_slice()),
        "the wrapped key does not contain the key"
    );
    let other = fx
        .keys
        .generate_data_key(&fx.key_a, &ctx)
        .await
        .expect("generate");
    assert_ne!(
        *other.plaintext, *data_key.plaintext,
        "every data key is fresh"
    );

    let unwrapped = fx
        .keys
        .decrypt(&data_key.ciphertext, &ctx)
        .await
        .expect("decrypt");
    assert_eq!(*unwrapped.plaintext, *data_key.plaintext);
    assert_eq!(unwrapped.key_id, fx.key_a, "decrypt names the wrapping key");
}

async fn context_mismatch_is_invalid_ciphertext(fx: &KeyFixture) {
    let data_key = fx
        .keys
        .generate_data_key(&fx.key_a, &context("USER#1"))
        .await
        .expect("generate");
    for wrong in [context("USER#2"), EncryptionContext::default()] {
        let err = fx
            .keys
            .decrypt(&data_key.ciphertext, &wrong)
            .await
            .err()
            .expect("another context is refused");
        assert!(matches!(err, KeyError::InvalidCiphertext), "{err:?}");
    }
}

async fn tampered_ciphertext_is_invalid_ciphertext(fx: &KeyFixture) {
    let ctx = context("USER#1");
    let data_key = fx
        .keys
        .generate_data_key(&fx.key_a, &ctx)
        .await
        .expect("generate");
    let mut tampered = data_key.ciphertext.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let err = fx
        .keys
        .decrypt(&tampered, &ctx)
        .await
        .err()
        .expect("tampered");
    assert!(matches!(err, KeyError::InvalidCiphertext), "{err:?}");
}

async fn re_encrypt_to_a_second_key(fx: &KeyFixture) {
    let (old_ctx, new_ctx) = (context("USER#1"), context("USER#1-rotated"));
    let data_key = fx
        .keys
        .generate_data_key(&fx.key_a, &old_ctx)
        .await
        .expect("generate");
    let rewrapped = fx
        .keys
        .re_encrypt(&data_key.ciphertext, &old_ctx, &fx.key_b, &new_ctx)
        .await
        .expect("re-encrypt");
    assert_ne!(rewrapped.ciphertext, data_key.ciphertext);
    assert_eq!(rewrapped.key_id, fx.key_b, "names the destination key");
    let unwrapped = fx
        .keys
        .decrypt(&rewrapped.ciphertext, &new_ctx)
        .await
        .expect("decrypt");
    assert_eq!(
        *unwrapped.plaintext, *data_key.plaintext,
        "the same data key"
    );
    assert_eq!(unwrapped.key_id, fx.key_b, "now wrapped by the second key");
    let err = fx
        .keys
        .decrypt(&rewrapped.ciphertext, &old_ctx)
        .await
        .err()
        .expect("old context");
    assert!(matches!(err, KeyError::InvalidCiphertext), "{err:?}");
    let err = fx
        .keys
        .re_encrypt(&data_key.ciphertext, &new_ctx, &fx.key_b, &new_ctx)
        .await
        .expect_err("re-encrypt under the wrong source context");
    assert!(matches!(err, KeyError::InvalidCiphertext), "{err:?}");
}

async fn unknown_key_is_key_not_found(fx: &KeyFixture) {
    let err = fx
        .keys
        .generate_data_key(&fx.unknown, &context("USER#1"))
        .await
        .err()
        .expect("unknown key");
    assert!(matches!(err, KeyError::KeyNotFound), "{err:?}");
    let err = fx
        .keys
        .check(&fx.unknown)
        .await
        .expect_err("check of an unknown key");
    assert!(matches!(err, KeyError::KeyNotFound), "{err:?}");
}

async fn check_accepts_an_enabled_key(fx: &KeyFixture) {
    fx.keys.check(&fx.key_a).await.expect("check");
}

/// What the rotation command does: same context on both sides, only the key changes.
async fn re_encrypt_keeping_the_context_rotates_the_key_only(fx: &KeyFixture) {
    let ctx = context("DATAKEY#1");
    let data_key = fx
        .keys
        .generate_data_key(&fx.key_a, &ctx)
        .await
        .expect("generate");
    let rewrapped = fx
        .keys
        .re_encrypt(&data_key.ciphertext, &ctx, &fx.key_b, &ctx)
        .await
        .expect("re-encrypt");
    let unwrapped = fx
        .keys
        .decrypt(&rewrapped.ciphertext, &ctx)
        .await
        .expect("decrypt");
    assert_eq!(*unwrapped.plaintext, *data_key.plaintext);
    assert_eq!(unwrapped.key_id, fx.key_b);
    // Re-wrapping again (a second run of the command) is harmless: same key, same data key.
    let again = fx
        .keys
        .re_encrypt(&rewrapped.ciphertext, &ctx, &fx.key_b, &ctx)
        .await
        .expect("re-encrypt under the same key");
    let unwrapped = fx
        .keys
        .decrypt(&again.ciphertext, &ctx)
        .await
        .expect("decrypt");
    assert_eq!(*unwrapped.plaintext, *data_key.plaintext);
    // The original wrapped form still works: KMS keys are not deleted by rotation.
    let original = fx
        .keys
        .decrypt(&data_key.ciphertext, &ctx)
        .await
        .expect("decrypt the original");
    assert_eq!(original.key_id, fx.key_a);
}

async fn re_encrypt_to_an_unknown_key_is_key_not_found(fx: &KeyFixture) {
    let ctx = context("USER#1");
    let data_key = fx
        .keys
        .generate_data_key(&fx.key_a, &ctx)
        .await
        .expect("generate");
    let err = fx
        .keys
        .re_encrypt(&data_key.ciphertext, &ctx, &fx.unknown, &ctx)
        .await
        .expect_err("unknown destination");
    assert!(matches!(err, KeyError::KeyNotFound), "{err:?}");
}

async fn resolve_key_id_names_keys_as_they_are_reported(fx: &KeyFixture) {
    for key in [&fx.key_a, &fx.key_b] {
        let resolved = fx.keys.resolve_key_id(key).await.expect("resolve");
        assert_eq!(&resolved, key);
    }
    for (alias, key) in &fx.aliases {
        let resolved = fx.keys.resolve_key_id(alias).await.expect("resolve alias");
        assert_eq!(&resolved, key, "{alias}");
    }
    let err = fx
        .keys
        .resolve_key_id(&fx.unknown)
        .await
        .expect_err("unknown key");
    assert!(matches!(err, KeyError::KeyNotFound), "{err:?}");
}

async fn sign_returns_raw_es256_that_the_public_key_verifies(fx: &KeyFixture) {
    let der = fx.keys.public_key(&fx.signing).await.expect("public key");
    let public = PublicKey::from_spki_der(&der).expect("a P-256 SubjectPublicKeyInfo");
    assert_eq!(
        fx.keys.public_key(&fx.signing).await.expect("again"),
        der,
        "the same key every time"
    );
    let message = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0";
    let first = fx.keys.sign(&fx.signing, message).await.expect("sign");
    let second = fx.keys.sign(&fx.signing, message).await.expect("sign");
    assert_eq!(first.len(), 64, "r || s");
    assert!(public.verifies(message, &first));
    assert!(public.verifies(message, &second));
    assert!(!public.verifies(b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIyIn0", &first));
    let mut flipped = first;
    flipped[10] ^= 1;
    assert!(!public.verifies(message, &flipped));
}

async fn signing_keys_and_data_keys_do_not_mix(fx: &KeyFixture) {
    let err = fx
        .keys
        .sign(&fx.key_a, b"message")
        .await
        .expect_err("a symmetric key cannot sign");
    assert!(matches!(err, KeyError::KeyUnusable), "{err:?}");
    let err = fx
        .keys
        .public_key(&fx.key_a)
        .await
        .expect_err("a symmetric key has no public half");
    assert!(matches!(err, KeyError::KeyUnusable), "{err:?}");
}

// Local only: moto wraps data keys under an ECC key; KMS refuses with
// InvalidKeyUsageException, which `kms.rs` maps to KeyUnusable (pinned there).
async fn a_signing_key_cannot_wrap_data_keys(fx: &KeyFixture) {
    let err = fx
        .keys
        .generate_data_key(&fx.signing, &context("USER#1"))
        .await
        .err()
        .expect("a signing key cannot wrap data keys");
    assert!(matches!(err, KeyError::KeyUnusable), "{err:?}");
}

async fn signing_with_an_unknown_key_is_key_not_found(fx: &KeyFixture) {
    let err = fx
        .keys
        .sign(&fx.unknown, b"message")
        .await
        .expect_err("unknown key");
    assert!(matches!(err, KeyError::KeyNotFound), "{err:?}");
    let err = fx
        .keys
        .public_key(&fx.unknown)
        .await
        .expect_err("unknown key");
    assert!(matches!(err, KeyError::KeyNotFound), "{err:?}");
}

async fn a_message_over_the_limit_is_refused(fx: &KeyFixture) {
    let at_limit = vec![b'a'; MAX_SIGN_MESSAGE];
    fx.keys
        .sign(&fx.signing, &at_limit)
        .await
        .expect("4096 bytes sign");
    let err = fx
        .keys
        .sign(&fx.signing, &[b'a'; MAX_SIGN_MESSAGE + 1])
        .await
        .expect_err("one byte more is refused");
    assert!(matches!(err, KeyError::MessageTooLong), "{err:?}");
}
