//! The key port on KMS. Every call carries the encryption context; KMS refuses a
//! decryption under any other context (InvalidCiphertextException).

use crate::crypto::signing;
use crate::ports::keys::{
    DataKey, EncryptionContext, KeyError, KeyService, Rewrapped, Unwrapped, MAX_SIGN_MESSAGE,
};
use async_trait::async_trait;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    DataKeySpec, KeySpec, KeyState, KeyUsageType, MessageType, SigningAlgorithmSpec,
};
use std::collections::HashMap;
use zeroize::Zeroizing;

pub struct Kms {
    client: super::LazyClient<aws_sdk_kms::Client>,
}

impl Kms {
    pub fn new(client: impl Into<super::LazyClient<aws_sdk_kms::Client>>) -> Self {
        Self {
            client: client.into(),
        }
    }
}

fn context(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!context.0.is_empty()).then(|| context.0.clone().into_iter().collect())
}

fn map_err<E, R>(err: SdkError<E, R>) -> KeyError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some("InvalidCiphertextException" | "IncorrectKeyException") => KeyError::InvalidCiphertext,
        Some("NotFoundException") => KeyError::KeyNotFound,
        Some(
            "DisabledException"
            | "KMSInvalidStateException"
            | "AccessDeniedException"
            | "InvalidKeyUsageException"
            | "UnsupportedOperationException",
        ) => KeyError::KeyUnusable,
        _ => KeyError::Unavailable(Box::new(err)),
    }
}

fn missing(what: &str) -> KeyError {
    KeyError::Unavailable(format!("KMS answered without {what}").into())
}

#[async_trait]
impl KeyService for Kms {
    async fn generate_data_key(
        &self,
        key_id: &str,
        ctx: &EncryptionContext,
    ) -> Result<DataKey, KeyError> {
        let output = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(context(ctx))
            .send()
            .await
            .map_err(map_err)?;
        let plaintext = Zeroizing::new(
            output
                .plaintext()
                .ok_or_else(|| missing("a plaintext key"))?
                .as_ref()
                .to_vec(),
        );
        let ciphertext = output
            .ciphertext_blob()
            .ok_or_else(|| missing("a wrapped key"))?
            .as_ref()
            .to_vec();
        Ok(DataKey {
            key_id: output.key_id().unwrap_or(key_id).to_string(),
            plaintext,
            ciphertext,
        })
    }

    async fn decrypt(
        &self,
        ciphertext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Unwrapped, KeyError> {
        let output = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(ciphertext))
            .set_encryption_context(context(ctx))
            .send()
            .await
            .map_err(map_err)?;
        Ok(Unwrapped {
            key_id: output.key_id().unwrap_or_default().to_string(),
            plaintext: Zeroizing::new(
                output
                    .plaintext()
                    .ok_or_else(|| missing("a plaintext key"))?
                    .as_ref()
                    .to_vec(),
            ),
        })
    }

    async fn re_encrypt(
        &self,
        ciphertext: &[u8],
        ctx: &EncryptionContext,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<Rewrapped, KeyError> {
        let output = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(ciphertext))
            .set_source_encryption_context(context(ctx))
            .destination_key_id(destination_key_id)
            .set_destination_encryption_context(context(destination_context))
            .send()
            .await
            .map_err(map_err)?;
        let ciphertext = output
            .ciphertext_blob()
            .ok_or_else(|| missing("a wrapped key"))?
            .as_ref()
            .to_vec();
        Ok(Rewrapped {
            key_id: output.key_id().unwrap_or(destination_key_id).to_string(),
            ciphertext,
        })
    }

    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<[u8; 64], KeyError> {
        if message.len() > MAX_SIGN_MESSAGE {
            return Err(KeyError::MessageTooLong);
        }
        let output = self
            .client
            .sign()
            .key_id(key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|err| match err.code() {
                // KMS says InvalidKeyUsageException for a key that cannot sign; the
                // emulator answers this instead.
                Some("ValidationException") => KeyError::KeyUnusable,
                _ => map_err(err),
            })?;
        let der = output.signature().ok_or_else(|| missing("a signature"))?;
        // KMS answers with a DER ECDSA-Sig-Value; JWS wants r || s.
        signing::der_to_raw(der.as_ref()).map_err(|err| KeyError::Unavailable(Box::new(err)))
    }

    async fn public_key(&self, key_id: &str) -> Result<Vec<u8>, KeyError> {
        let output = self
            .client
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(map_err)?;
        let usable = output
            .key_spec()
            .is_none_or(|spec| *spec == KeySpec::EccNistP256)
            && output
                .key_usage()
                .is_none_or(|usage| *usage == KeyUsageType::SignVerify);
        if !usable {
            return Err(KeyError::KeyUnusable);
        }
        let der = output
            .public_key()
            .map(|der| der.as_ref().to_vec())
            .ok_or_else(|| missing("a public key"))?;
        // Whatever the metadata says, the port promises a P-256 key.
        signing::PublicKey::from_spki_der(&der).map_err(|_| KeyError::KeyUnusable)?;
        Ok(der)
    }

    async fn resolve_key_id(&self, key_id: &str) -> Result<String, KeyError> {
        let output = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(map_err)?;
        output
            .key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_string)
            .ok_or_else(|| missing("a key ARN"))
    }

    async fn check(&self, key_id: &str) -> Result<(), KeyError> {
        let output = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(map_err)?;
        match output.key_metadata().and_then(|m| m.key_state()) {
            Some(KeyState::Enabled) => Ok(()),
            _ => Err(KeyError::KeyUnusable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::operation::decrypt::DecryptError;
    use aws_smithy_types::error::ErrorMetadata;

    fn coded(code: &str) -> SdkError<DecryptError, ()> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("sdk text")
            .build();
        SdkError::service_error(DecryptError::generic(meta), ())
    }

    // Disabled keys and denied access cannot be set up on the local keyring, so the
    // mapping table is pinned here.
    #[test]
    fn kms_errors_map_to_typed_errors() {
        let cases = [
            ("InvalidCiphertextException", "InvalidCiphertext"),
            ("IncorrectKeyException", "InvalidCiphertext"),
            ("NotFoundException", "KeyNotFound"),
            ("DisabledException", "KeyUnusable"),
            ("KMSInvalidStateException", "KeyUnusable"),
            ("AccessDeniedException", "KeyUnusable"),
            ("InvalidKeyUsageException", "KeyUnusable"),
            ("UnsupportedOperationException", "KeyUnusable"),
            ("KMSInternalException", "Unavailable"),
        ];
        for (code, want) in cases {
            let got = format!("{:?}", map_err(coded(code)));
            assert!(got.starts_with(want), "{code} -> {got}");
        }
        let err = map_err(coded("KMSInternalException"));
        assert!(
            !err.to_string().contains("sdk text"),
            "no SDK text in the message"
        );
    }
}
