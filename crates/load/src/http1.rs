//! HTTP/1.1 on one keep-alive connection, driven by the worker that sends on it: the request is
//! written whole (encoded once per step), the response read into the connection's own buffer and
//! parsed in place with `httparse`. No connection task, no channel, no allocation per request —
//! the generator's CPU per request is what bounds the rate it can measure (see
//! `scripts/bench-load.sh`). HTTP/2 goes through hyper.

use std::mem::MaybeUninit;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Headers a response may carry.
const MAX_HEADERS: usize = 100;
/// Largest response head, or chunk-size or trailer line, accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The read buffer's first size, and the most it grows to while a large body streams in.
const BUFFER: usize = 16 * 1024;
const MAX_BUFFER: usize = 256 * 1024;

/// Why an exchange failed.
#[derive(Debug, PartialEq)]
pub(crate) enum Failure {
    /// A reused connection the server had closed while idle: nothing of a response came back,
    /// so the request may be sent again on a new connection.
    Stale,
    /// Anything else, said for the user.
    Broken(String),
}

/// One response, read to its end.
#[derive(Debug, PartialEq)]
pub(crate) struct Response {
    pub status: u16,
    /// Body bytes as sent (compressed or not), framing excluded.
    pub bytes: u64,
    /// Whether the body came with a `Content-Encoding`.
    pub encoded: bool,
}

/// Where body bytes go: counted, and the first `keep` of them copied into `sample`.
struct Sink<'a> {
    bytes: u64,
    sample: Option<&'a mut Vec<u8>>,
    keep: usize,
}

impl Sink<'_> {
    fn take(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some(sample) = self.sample.as_deref_mut() {
            let room = self.keep.saturating_sub(sample.len());
            sample.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
}

/// How the body's end is known.
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// An HTTP/1.1 connection over a stream (TCP, or TLS over TCP).
pub(crate) struct Http1<S> {
    stream: S,
    buffer: Vec<u8>,
    /// `buffer[start..end]` is read and not yet consumed.
    start: usize,
    end: usize,
    /// Whether a response was read on it (a failure before any byte may then be a stale
    /// keep-alive connection, not the server's answer).
    reused: bool,
    /// Whether the server ended the connection (`Connection: close`, a body read to the close).
    closed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Http1<S> {
    pub(crate) fn new(stream: S) -> Http1<S> {
        Http1 {
            stream,
            buffer: vec![0; BUFFER],
            start: 0,
            end: 0,
            reused: false,
            closed: false,
        }
    }

    /// Whether the connection can carry another request.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes `request` (a whole encoded request) and reads the response to its end. `head`: the
    /// request was a HEAD (the response has no body whatever its headers say). With `sample`,
    /// the body's first `keep` bytes are appended there.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        head: bool,
        sample: Option<&mut Vec<u8>>,
        keep: usize,
    ) -> Result<Response, Failure> {
        // A response the server sent unasked (or the rest of one) would be taken for this
        // request's answer.
        self.start = 0;
        self.end = 0;
        let sent = async {
            self.stream.write_all(request).await?;
            self.stream.flush().await
        };
        if let Err(error) = sent.await {
            self.closed = true;
            return Err(if self.reused {
                Failure::Stale
            } else {
                Failure::Broken(format!("sending the request: {error}"))
            });
        }
        let (status, framing, encoded) = self.read_head(head).await?;
        let mut sink = Sink {
            bytes: 0,
            sample,
            keep,
        };
        match framing {
            Framing::Length(length) => self.read_exactly(length, &mut sink).await?,
            Framing::Chunked => self.read_chunked(&mut sink).await?,
            Framing::UntilClose => {
                self.closed = true;
                loop {
                    sink.take(&self.buffer[self.start..self.end]);
                    self.start = self.end;
                    if self.fill().await? == 0 {
                        break;
                    }
                }
            }
        }
        self.reused = true;
        Ok(Response {
            status,
            bytes: sink.bytes,
            encoded,
        })
    }

    /// Reads until a final (non-1xx) response head is parsed; returns its status, the body's
    /// framing and whether the body is encoded.
    async fn read_head(&mut self, head: bool) -> Result<(u16, Framing, bool), Failure> {
        let mut first = true;
        loop {
            let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut response,
                &self.buffer[self.start..self.end],
                &mut headers,
            );
            match parsed {
                Ok(httparse::Status::Complete(length)) => {
                    let status = response.code.unwrap_or_default();
                    let mut framing = None;
                    let mut chunked = false;
                    let mut encoded = false;
                    // HTTP/1.0 closes unless asked to keep alive; 1.1 keeps alive unless told.
                    let mut close = response.version == Some(0);
                    for header in response.headers.iter() {
                        let name = header.name;
                        if name.eq_ignore_ascii_case("content-length") {
                            let length = std::str::from_utf8(header.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok());
                            let Some(length) = length else {
                                let message = format!(
                                    "the response's Content-Length {:?} is not a number",
                                    String::from_utf8_lossy(header.value)
                                );
                                self.closed = true;
                                return Err(Failure::Broken(message));
                            };
                            framing.get_or_insert(Framing::Length(length));
                        } else if name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = header
                                .value
                                .rsplit(|&b| b == b',')
                                .next()
                                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                            framing = Some(if chunked {
                                Framing::Chunked
                            } else {
                                Framing::UntilClose
                            });
                        } else if name.eq_ignore_ascii_case("connection") {
                            for token in header.value.split(|&b| b == b',') {
                                let token = token.trim_ascii();
                                if token.eq_ignore_ascii_case(b"close") {
                                    close = true;
                                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                                    close = false;
                                }
                            }
                        } else if name.eq_ignore_ascii_case("content-encoding") {
                            encoded = true;
                        }
                    }
                    // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
                    if chunked {
                        framing = Some(Framing::Chunked);
                    }
                    self.start += length;
                    if (100..200).contains(&status) && status != 101 {
                        first = false;
                        continue;
                    }
                    self.closed |= close;
                    let framing = if head || status == 204 || status == 304 {
                        Framing::Length(0)
                    } else {
                        framing.unwrap_or(Framing::UntilClose)
                    };
                    return Ok((status, framing, encoded));
                }
                Ok(httparse::Status::Partial) => {
                    if self.end - self.start >= MAX_HEAD {
                        return Err(self.broken(format!("the response head is over {} kB", MAX_HEAD / 1024)));
                    }
                    let nothing_yet = first && self.end == self.start;
                    match self.fill().await {
                        Ok(0) | Err(_) if nothing_yet && self.reused => {
                            self.closed = true;
                            return Err(Failure::Stale);
                        }
                        Ok(0) => {
                            return Err(self.broken(if nothing_yet {
                                "the server closed the connection without answering".to_owned()
                            } else {
                                "the server closed the connection in the response head".to_owned()
                            }));
                        }
                        Ok(_) => {}
                        Err(failure) => return Err(failure),
                    }
                }
                Err(error) => return Err(self.broken(format!("malformed response head: {error}"))),
            }
        }
    }

    /// Consumes `length` body bytes into `sink`.
    async fn read_exactly(&mut self, mut length: u64, sink: &mut Sink<'_>) -> Result<(), Failure> {
        while length > 0 {
            if self.start == self.end && self.fill().await? == 0 {
                return Err(self.broken("the server closed the connection in the response body".to_owned()));
            }
            let take = (self.end - self.start).min(usize::try_from(length).unwrap_or(usize::MAX));
            sink.take(&self.buffer[self.start..self.start + take]);
            self.start += take;
            length -= take as u64;
        }
        Ok(())
    }

    /// Consumes a chunked body into `sink`, trailers skipped.
    async fn read_chunked(&mut self, sink: &mut Sink<'_>) -> Result<(), Failure> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buffer[self.start..self.end]) {
                    Ok(httparse::Status::Complete((line, size))) => {
                        self.start += line;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => self.fill_line("a chunk size").await?,
                    Err(_) => return Err(self.broken("malformed chunk size in the response body".to_owned())),
                }
            };
            if size == 0 {
                // Trailer lines, then the empty line that ends the body.
                loop {
                    match self.buffer[self.start..self.end]
                        .windows(2)
                        .position(|w| w == b"\r\n")
                    {
                        Some(at) => {
                            self.start += at + 2;
                            if at == 0 {
                                return Ok(());
                            }
                        }
                        None => self.fill_line("the trailers").await?,
                    }
                }
            }
            self.read_exactly(size, sink).await?;
            while self.end - self.start < 2 {
                self.fill_line("a chunk's end").await?;
            }
            if &self.buffer[self.start..self.start + 2] != b"\r\n" {
                return Err(self.broken("a chunk does not end with CRLF".to_owned()));
            }
            self.start += 2;
        }
    }

    /// Reads more of a line the buffer holds part of.
    async fn fill_line(&mut self, what: &str) -> Result<(), Failure> {
        if self.end - self.start >= MAX_HEAD {
            return Err(self.broken(format!("{what} is over {} kB", MAX_HEAD / 1024)));
        }
        if self.fill().await? == 0 {
            return Err(self.broken(format!("the server closed the connection in {what}")));
        }
        Ok(())
    }

    /// Reads what the stream has into the buffer's free end; returns how much (0: closed).
    async fn fill(&mut self) -> Result<usize, Failure> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buffer.len() {
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else {
                self.buffer.resize(self.buffer.len() * 2, 0);
            }
        }
        let read = self.stream.read(&mut self.buffer[self.end..]).await;
        let read = read.map_err(|error| self.broken(format!("reading the response: {error}")))?;
        self.end += read;
        // A read that filled the buffer: a large body is streaming in; read it in larger bites.
        if self.end == self.buffer.len() && self.start == 0 && self.buffer.len() < MAX_BUFFER {
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        Ok(read)
    }

    fn broken(&mut self, message: String) -> Failure {
        self.closed = true;
        Failure::Broken(message)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n";

    /// A loopback server for one connection: for each request head it reads, it writes the next
    /// answer, piece by piece with a pause between (so the client sees them in separate reads),
    /// then closes the connection when the answers run out.
    async fn server(answers: Vec<Vec<&'static [u8]>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            for answer in answers {
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut buffer = [0; 1024];
                    let read = stream.read(&mut buffer).await.expect("read");
                    if read == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buffer[..read]);
                }
                seen.clear();
                for piece in answer {
                    stream.write_all(piece).await.expect("write");
                    stream.flush().await.expect("flush");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        addr
    }

    /// A plain (not encoded) response's outcome.
    fn answered(status: u16, bytes: u64) -> Result<Response, Failure> {
        Ok(Response {
            status,
            bytes,
            encoded: false,
        })
    }

    async fn connect(addr: SocketAddr) -> Http1<TcpStream> {
        Http1::new(TcpStream::connect(addr).await.expect("connect"))
    }

    #[tokio::test]
    async fn keeps_a_content_length_connection_alive_across_requests() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let addr = server(vec![
            vec![ok],
            vec![b"HTTP/1.1 503 Busy\r\ncontent-length: 4\r\n\r\n", b"busy"],
        ])
        .await;
        let mut connection = connect(addr).await;
        let first = connection.exchange(GET, false, None, 0).await;
        assert_eq!(first, answered(200, 5));
        assert!(!connection.is_closed());
        let second = connection.exchange(GET, false, None, 0).await;
        assert_eq!(second, answered(503, 4));
    }

    #[tokio::test]
    async fn reads_a_chunked_body_split_across_reads_with_extensions_and_trailers() {
        let addr = server(vec![vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n4\r",
            b"\nWiki\r\n5;name=value\r\npe",
            b"dia\r",
            b"\n0\r\nX-Checksum: 1\r\n",
            b"\r\n",
        ]])
        .await;
        let mut connection = connect(addr).await;
        let mut sample = Vec::new();
        let response = connection.exchange(GET, false, Some(&mut sample), 1024).await;
        assert_eq!(
            response,
            Ok(Response {
                status: 200,
                bytes: 9,
                encoded: true
            })
        );
        assert_eq!(sample, b"Wikipedia");
        assert!(!connection.is_closed());
    }

    #[tokio::test]
    async fn reads_a_body_without_length_to_the_close() {
        let addr = server(vec![vec![b"HTTP/1.0 200 OK\r\n\r\nabc", b"def"]]).await;
        let mut connection = connect(addr).await;
        let response = connection.exchange(GET, false, None, 0).await;
        assert_eq!(response, answered(200, 6));
        assert!(connection.is_closed());
    }

    #[tokio::test]
    async fn a_head_request_and_a_204_have_no_body_whatever_the_headers_say() {
        let addr = server(vec![
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"],
            vec![b"HTTP/1.1 204 No Content\r\n\r\n"],
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        ])
        .await;
        let mut connection = connect(addr).await;
        let head = connection
            .exchange(b"HEAD / HTTP/1.1\r\nhost: t\r\n\r\n", true, None, 0)
            .await;
        assert_eq!(head, answered(200, 0));
        let empty = connection.exchange(GET, false, None, 0).await;
        assert_eq!(empty, answered(204, 0));
        let last = connection.exchange(GET, false, None, 0).await;
        assert_eq!(last, answered(200, 2));
    }

    #[tokio::test]
    async fn skips_an_interim_100_continue() {
        let addr = server(vec![vec![
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        ]])
        .await;
        let mut connection = connect(addr).await;
        let response = connection.exchange(GET, false, None, 0).await;
        assert_eq!(response, answered(201, 0));
    }

    #[tokio::test]
    async fn connection_close_ends_the_connection_after_the_body() {
        let addr = server(vec![vec![
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        ]])
        .await;
        let mut connection = connect(addr).await;
        let response = connection.exchange(GET, false, None, 0).await;
        assert_eq!(response, answered(200, 2));
        assert!(connection.is_closed());
    }

    #[tokio::test]
    async fn a_keep_alive_connection_closed_while_idle_is_stale_not_an_answer() {
        let addr = server(vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]]).await;
        let mut connection = connect(addr).await;
        assert!(connection.exchange(GET, false, None, 0).await.is_ok());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            connection.exchange(GET, false, None, 0).await,
            Err(Failure::Stale)
        );
        assert!(connection.is_closed());
    }

    #[tokio::test]
    async fn says_where_a_response_broke_off() {
        let cases: [(Vec<&'static [u8]>, &str); 3] = [
            (
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
                "the server closed the connection in the response body",
            ),
            (vec![], "the server closed the connection without answering"),
            (vec![b"SMTP ready\r\n\r\n"], "malformed response head"),
        ];
        for (answer, said) in cases {
            let outcome = connect(server(vec![answer]).await)
                .await
                .exchange(GET, false, None, 0)
                .await;
            assert!(
                matches!(&outcome, Err(Failure::Broken(m)) if m.starts_with(said)),
                "{outcome:?}"
            );
        }
    }

    #[tokio::test]
    async fn counts_a_large_body_and_keeps_only_the_sample_asked_for() {
        static BODY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
            let mut body = b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n".to_vec();
            body.resize(body.len() + 3_000_000, b'x');
            body
        });
        let addr = server(vec![vec![BODY.as_slice()]]).await;
        let mut connection = connect(addr).await;
        let mut sample = Vec::new();
        let response = connection.exchange(GET, false, Some(&mut sample), 1000).await;
        assert_eq!(response, answered(200, 3_000_000));
        assert_eq!(sample.len(), 1000);
    }
}
