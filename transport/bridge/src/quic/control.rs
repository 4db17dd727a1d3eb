//! The QUIC control stream over quinn: the sans-IO [`camring_protocol::quic`] (codes,
//! `hello`, line splitting) and the async read of a line from a quinn stream.

pub use camring_protocol::quic::*;

/// Reading whole lines from a quinn stream.
pub trait ReadLine {
    /// Reads from `stream` until a line is complete (or too long, or the stream ends).
    fn read(
        &mut self,
        stream: &mut quinn::RecvStream,
    ) -> impl std::future::Future<Output = Result<Line, quinn::ReadError>> + Send;
}

impl ReadLine for LineReader {
    async fn read(&mut self, stream: &mut quinn::RecvStream) -> Result<Line, quinn::ReadError> {
        loop {
            if let Some(line) = self.next_line() {
                return Ok(line);
            }
            match stream.read_chunk(4096, true).await? {
                Some(chunk) => self.push(&chunk.bytes),
                None => return Ok(Line::End),
            }
        }
    }
}
