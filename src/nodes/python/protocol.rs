//! The gateway ↔ worker wire format on the child's stdin/stdout: each message is a frame, a
//! 4-byte big-endian length followed by that many bytes of UTF-8 JSON. The gateway sends the
//! worker's configuration first and gets `{"ready": true}`; after that each request frame
//! gets exactly one response frame ([`Response`]). One request is in flight per worker.
//!
//! Frames from the worker are bounded ([`read_frame`]'s `max`): a worker that announces more
//! is killed rather than believed.

use std::io;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("the worker closed its output")]
    Closed,
    #[error("the worker sent a frame of {0} bytes, more than allowed")]
    TooLarge(usize),
    #[error("reading from the worker failed: {0}")]
    Io(#[from] io::Error),
    #[error("the worker sent a frame that is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes one frame holding `payload` (already-encoded JSON).
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    // One buffer, one write: the length and the body reach the pipe together.
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    writer.write_all(&frame).await?;
    writer.flush().await
}

/// Reads one frame of at most `max` bytes.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(FrameError::Closed);
        }
        Err(error) => return Err(error.into()),
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await.map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Closed
        } else {
            error.into()
        }
    })?;
    Ok(body)
}

/// The worker's answer to one request.
#[derive(Debug, Deserialize)]
pub(crate) struct Response {
    pub ok: bool,
    #[serde(default)]
    pub output: Map<String, Value>,
    /// Why the code failed (`ok: false`): the exception and the line it came from.
    #[serde(default)]
    pub error: String,
    /// The worker cannot be trusted after this failure (MemoryError, ...): replace it.
    #[serde(default)]
    pub fatal: bool,
    /// What the code printed (bounded by the worker).
    #[serde(default)]
    pub printed: String,
}

/// The worker's first frame.
#[derive(Debug, Deserialize)]
pub(crate) struct Ready {
    pub ready: bool,
    pub python: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        crate::nodes::files::testing::run(async {
            let mut wire = Vec::new();
            write_frame(&mut wire, br#"{"ok":true}"#).await.unwrap();
            assert_eq!(&wire[..4], &11u32.to_be_bytes());
            let body = read_frame(&mut wire.as_slice(), 64).await.unwrap();
            let response: Response = serde_json::from_slice(&body).unwrap();
            assert!(response.ok && response.output.is_empty());

            assert!(matches!(
                read_frame(&mut wire.as_slice(), 10).await,
                Err(FrameError::TooLarge(11))
            ));
            assert!(matches!(
                read_frame(&mut &wire[..6], 64).await,
                Err(FrameError::Closed)
            ));
            assert!(matches!(
                read_frame(&mut &b""[..], 64).await,
                Err(FrameError::Closed)
            ));
        });
    }
}
