//! The built-in scanner, the local default: it finds the EICAR test file (anywhere in
//! the stream, across chunk boundaries) and content whose SHA-256 is on a configured
//! block list. It knows no malware: on AWS the deploy guide requires clamd (or
//! GuardDuty Malware Protection for S3).

use crate::ports::scanner::{ScanError, ScanSession, Scanner, Verdict, EICAR};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// The name the built-in scanner reports for EICAR (ClamAV's own for its test file).
pub const EICAR_SIGNATURE: &str = "Eicar-Signature";

#[derive(Debug, Clone)]
pub struct BuiltinScanner {
    blocklist: Arc<HashMap<[u8; 32], String>>,
    max_len: u64,
}

/// Parses a block list: `<sha256 hex>:<signature name>` entries separated by commas or
/// new lines. A malformed entry is an error (a list that silently blocks nothing would
/// be worse than none).
pub fn parse_blocklist(text: &str) -> Result<HashMap<[u8; 32], String>, String> {
    let mut list = HashMap::new();
    for entry in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (hash, name) = entry
            .split_once(':')
            .ok_or_else(|| "block list entries are <sha256 hex>:<name>".to_string())?;
        let bytes = hex::decode(hash.trim()).map_err(|_| "a block list hash is not hex")?;
        let hash: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "a block list hash is not 32 bytes")?;
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err("block list names are 1-100 characters".into());
        }
        list.insert(hash, name.to_string());
    }
    Ok(list)
}

impl BuiltinScanner {
    /// Streams longer than `max_len` are refused ([`ScanError::TooLarge`]), like clamd
    /// past its `StreamMaxLength`.
    pub fn new(blocklist: HashMap<[u8; 32], String>, max_len: u64) -> Self {
        Self {
            blocklist: Arc::new(blocklist),
            max_len,
        }
    }
}

struct BuiltinSession {
    blocklist: Arc<HashMap<[u8; 32], String>>,
    max_len: u64,
    hasher: Sha256,
    len: u64,
    /// The last `EICAR.len() - 1` bytes seen, so a match across chunks is found.
    tail: Vec<u8>,
    eicar: bool,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[async_trait]
impl ScanSession for BuiltinSession {
    async fn feed(&mut self, chunk: &[u8]) -> Result<(), ScanError> {
        self.len += chunk.len() as u64;
        if self.len > self.max_len {
            return Err(ScanError::TooLarge);
        }
        self.hasher.update(chunk);
        if !self.eicar {
            let head = &chunk[..chunk.len().min(EICAR.len() - 1)];
            let mut seam = std::mem::take(&mut self.tail);
            seam.extend_from_slice(head);
            self.eicar = contains(&seam, EICAR) || contains(chunk, EICAR);
            let keep = EICAR.len() - 1;
            if chunk.len() >= keep {
                seam.clear();
                seam.extend_from_slice(&chunk[chunk.len() - keep..]);
            } else {
                let drop = seam.len().saturating_sub(keep);
                seam.drain(..drop);
            }
            self.tail = seam;
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<Verdict, ScanError> {
        if self.eicar {
            return Ok(Verdict::Infected {
                signature: EICAR_SIGNATURE.into(),
            });
        }
        let hash: [u8; 32] = self.hasher.finalize().into();
        Ok(match self.blocklist.get(&hash) {
            Some(name) => Verdict::Infected {
                signature: name.clone(),
            },
            None => Verdict::Clean,
        })
    }
}

#[async_trait]
impl Scanner for BuiltinScanner {
    fn name(&self) -> &'static str {
        "builtin"
    }

    async fn start(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        Ok(Box::new(BuiltinSession {
            blocklist: self.blocklist.clone(),
            max_len: self.max_len,
            hasher: Sha256::new(),
            len: 0,
            tail: Vec::with_capacity(EICAR.len() * 2),
            eicar: false,
        }))
    }

    async fn check(&self) -> Result<(), ScanError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_parse_or_fail_loudly() {
        let hash = "ab".repeat(32);
        let list = parse_blocklist(&format!("{hash}:Test.One,\n {hash}:Test.Two")).expect("list");
        assert_eq!(list.len(), 1);
        assert!(parse_blocklist("nothex:Name").is_err());
        assert!(parse_blocklist(&hash).is_err());
        assert!(parse_blocklist(&format!("{}:X", "ab".repeat(31))).is_err());
        assert!(parse_blocklist("").expect("empty").is_empty());
    }
}
