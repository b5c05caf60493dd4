//! clamd's `INSTREAM` command over TCP: `zINSTREAM\0`, then chunks each prefixed with
//! its length (4 bytes, big endian), then a zero length; the reply is one
//! NUL-terminated line: `stream: OK`, `stream: <signature> FOUND`, or `… ERROR`
//! (`INSTREAM size limit exceeded. ERROR` past `StreamMaxLength`, after which clamd
//! closes the connection).

use crate::ports::scanner::{ScanError, ScanSession, Scanner, Verdict};
use async_trait::async_trait;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longest reply we read (clamd's are one short line).
const MAX_REPLY: usize = 4096;
/// Largest chunk sent at once.
const MAX_CHUNK: usize = 1 << 20;

/// A clamd reachable at `addr` (`host:port`); every scan must end within `timeout`.
#[derive(Debug, Clone)]
pub struct Clamd {
    addr: String,
    timeout: Duration,
}

/// The clamd.conf limits the documents pipeline relies on, for an upload limit of
/// `upload_limit` bytes: streams up to a MiB above it are accepted (so the worker, not
/// clamd, refuses wrong sizes), and a file clamd cannot scan completely is reported as
/// `Heuristics.Limits.Exceeded.*` instead of `OK` (`AlertExceedsMax`). The test suite's
/// clamd and the deploy guide use these lines.
pub fn clamd_limits(upload_limit: u64) -> String {
    let mib = upload_limit.div_ceil(1 << 20);
    format!(
        "AlertExceedsMax yes\nStreamMaxLength {}M\nMaxFileSize {mib}M\nMaxScanSize {mib}M\n",
        mib + 1
    )
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> ScanError {
    ScanError::Unavailable(Box::new(err))
}

/// Reads one NUL-terminated reply (or up to EOF).
async fn read_reply(stream: &mut TcpStream) -> Result<String, ScanError> {
    let mut reply = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    loop {
        let n = stream.read(&mut buf).await.map_err(unavailable)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.contains(&0) || reply.len() > MAX_REPLY {
            break;
        }
    }
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    Ok(String::from_utf8_lossy(&reply[..end]).trim().to_string())
}

/// Interprets a reply line of `INSTREAM`.
pub fn parse_reply(reply: &str) -> Result<Verdict, ScanError> {
    let line = reply.trim_end_matches('\0').trim();
    if line.contains("size limit exceeded") {
        return Err(ScanError::TooLarge);
    }
    let Some(rest) = line.strip_prefix("stream: ") else {
        return Err(ScanError::Protocol(line.chars().take(200).collect()));
    };
    if rest == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(signature) = rest.strip_suffix(" FOUND") {
        if !signature.is_empty() {
            return Ok(Verdict::Infected {
                signature: signature.to_string(),
            });
        }
    }
    if rest.ends_with(" ERROR") {
        return Err(ScanError::Unavailable(rest.to_string().into()));
    }
    Err(ScanError::Protocol(line.chars().take(200).collect()))
}

impl Clamd {
    pub fn new(addr: impl Into<String>, timeout: Duration) -> Self {
        Self {
            addr: addr.into(),
            timeout,
        }
    }

    async fn connect(&self, deadline: Instant) -> Result<TcpStream, ScanError> {
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| ScanError::Timeout)?
            .map_err(unavailable)?;
        stream.set_nodelay(true).map_err(unavailable)?;
        Ok(stream)
    }
}

struct ClamdSession {
    stream: TcpStream,
    deadline: Instant,
}

impl ClamdSession {
    /// After a failed write: clamd closes the connection once past `StreamMaxLength`,
    /// having said so first. Anything else is the scanner being unavailable.
    async fn after_write_error(&mut self, err: std::io::Error) -> ScanError {
        let reply =
            tokio::time::timeout(Duration::from_secs(2), read_reply(&mut self.stream)).await;
        match reply {
            Ok(Ok(reply)) if reply.contains("size limit exceeded") => ScanError::TooLarge,
            _ => unavailable(err),
        }
    }
}

#[async_trait]
impl ScanSession for ClamdSession {
    async fn feed(&mut self, chunk: &[u8]) -> Result<(), ScanError> {
        for part in chunk.chunks(MAX_CHUNK) {
            let len = (part.len() as u32).to_be_bytes();
            let write = async {
                self.stream.write_all(&len).await?;
                self.stream.write_all(part).await
            };
            match tokio::time::timeout_at(self.deadline, write).await {
                Err(_) => return Err(ScanError::Timeout),
                Ok(Err(err)) => return Err(self.after_write_error(err).await),
                Ok(Ok(())) => {}
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<Verdict, ScanError> {
        let deadline = self.deadline;
        match tokio::time::timeout_at(deadline, self.stream.write_all(&0u32.to_be_bytes())).await {
            Err(_) => return Err(ScanError::Timeout),
            Ok(Err(err)) => return Err(self.after_write_error(err).await),
            Ok(Ok(())) => {}
        }
        let reply = tokio::time::timeout_at(deadline, read_reply(&mut self.stream))
            .await
            .map_err(|_| ScanError::Timeout)??;
        parse_reply(&reply)
    }
}

#[async_trait]
impl Scanner for Clamd {
    fn name(&self) -> &'static str {
        "clamd"
    }

    async fn start(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        let deadline = Instant::now() + self.timeout;
        let mut stream = self.connect(deadline).await?;
        tokio::time::timeout_at(deadline, stream.write_all(b"zINSTREAM\0"))
            .await
            .map_err(|_| ScanError::Timeout)?
            .map_err(unavailable)?;
        Ok(Box::new(ClamdSession { stream, deadline }))
    }

    async fn check(&self) -> Result<(), ScanError> {
        let deadline = Instant::now() + self.timeout.min(Duration::from_secs(5));
        let mut stream = self.connect(deadline).await?;
        let ping = async {
            stream.write_all(b"zPING\0").await.map_err(unavailable)?;
            read_reply(&mut stream).await
        };
        let reply = tokio::time::timeout_at(deadline, ping)
            .await
            .map_err(|_| ScanError::Timeout)??;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(ScanError::Protocol(reply.chars().take(200).collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_typed() {
        assert_eq!(parse_reply("stream: OK\0").ok(), Some(Verdict::Clean));
        assert_eq!(
            parse_reply("stream: Eicar-Test.UNOFFICIAL FOUND").ok(),
            Some(Verdict::Infected {
                signature: "Eicar-Test.UNOFFICIAL".into()
            })
        );
        let limits =
            parse_reply("stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND").expect("verdict");
        assert!(limits.is_limits_exceeded());
        assert!(matches!(
            parse_reply("INSTREAM size limit exceeded. ERROR"),
            Err(ScanError::TooLarge)
        ));
        assert!(matches!(
            parse_reply("stream: Can't allocate memory ERROR"),
            Err(ScanError::Unavailable(_))
        ));
        assert!(matches!(parse_reply("PONG"), Err(ScanError::Protocol(_))));
        assert!(matches!(
            parse_reply("stream:  FOUND"),
            Err(ScanError::Protocol(_))
        ));
    }

    #[test]
    fn limits_sit_above_the_upload_limit() {
        let conf = clamd_limits(25 << 20);
        assert!(conf.contains("AlertExceedsMax yes"));
        assert!(conf.contains("StreamMaxLength 26M"));
        assert!(conf.contains("MaxFileSize 25M"));
    }
}
