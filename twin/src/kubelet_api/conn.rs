//! A server-side SPDY/3.1 session over an upgraded connection.
//!
//! Contract: [`Session::start`] takes the raw byte stream after the `101 Switching
//! Protocols` and runs two tasks: a reader that decodes frames and a writer that
//! encodes them (so header blocks are compressed in the order they hit the wire).
//! Every SYN_STREAM from the peer becomes a [`Stream`] on the returned channel; the
//! handler answers it with [`StreamSender::reply`] (SYN_REPLY) or rejects it with
//! [`StreamSender::reset`] (RST_STREAM), as `newSpdyStream` in
//! k8s.io/streaming/pkg/httpstream/spdy/connection.go (formerly
//! k8s.io/apimachinery/pkg/util/httpstream/spdy) does. DATA goes to the stream's
//! reader; DATA with FLAG_FIN is the peer's half-close (stdin EOF) and reads as
//! [`Recv::Fin`]; RST_STREAM reads as [`Recv::Reset`]; a lost connection reads as
//! [`Recv::Gone`]. PINGs the peer starts (odd ids) are echoed, as
//! moby/spdystream's `handlePingFrame`; SETTINGS, WINDOW_UPDATE and HEADERS are
//! ignored (spdystream enforces no flow-control windows either); GOAWAY from the
//! peer stops new streams. [`Session::close`] sends GOAWAY, half-closes the
//! connection and waits (bounded) for the peer to close it.
//!
//! Back-pressure: each stream buffers [`STREAM_QUEUE`] frames; a handler that stops
//! reading a stream must drop its [`StreamReader`] (data for it is then discarded)
//! or the whole connection stalls, as in spdystream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::spdy::{self, Decoder, Encoder, Frame, Headers};

/// DATA frames larger than this are split (the Go side reads any size up to 16 MiB).
pub const DATA_CHUNK: usize = 32 << 10;
/// Frames buffered per stream before the connection's reader waits.
pub const STREAM_QUEUE: usize = 64;
/// Frames buffered for the writer.
const OUT_QUEUE: usize = 256;
/// New streams buffered for the handler.
const INCOMING_QUEUE: usize = 32;
/// The largest frame accepted from the peer.
const MAX_IN_FRAME: usize = 1 << 20;

/// The connection is gone (the writer stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the SPDY connection is closed")]
pub struct Closed;

enum Outbound {
    Frame(Frame),
    /// Flush, half-close the connection and stop writing.
    Close,
}

enum Inbound {
    Data(Bytes),
    Fin,
    Reset(u32),
}

/// What a stream's reader gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recv {
    Data(Bytes),
    /// The peer half-closed the stream (DATA or SYN_STREAM with FLAG_FIN).
    Fin,
    /// The peer reset the stream (RST_STREAM status).
    Reset(u32),
    /// The connection ended (or the stream was already finished).
    Gone,
}

struct Shared {
    out: mpsc::Sender<Outbound>,
    streams: Mutex<HashMap<u32, mpsc::Sender<Inbound>>>,
    last_stream: AtomicU32,
    going_away: AtomicBool,
}

impl Shared {
    fn forget(&self, id: u32) {
        if let Ok(mut m) = self.streams.lock() {
            m.remove(&id);
        }
    }

    async fn send(&self, frame: Frame) -> Result<(), Closed> {
        self.out
            .send(Outbound::Frame(frame))
            .await
            .map_err(|_| Closed)
    }
}

/// A stream the peer opened: its id, its SYN_STREAM headers, and both directions.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub reader: StreamReader,
    pub sender: StreamSender,
}

impl Stream {
    /// A header of the SYN_STREAM (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        spdy::header(&self.headers, name)
    }
}

/// The peer-to-us half of a stream.
pub struct StreamReader {
    rx: Option<mpsc::Receiver<Inbound>>,
}

impl StreamReader {
    /// The next data, or how the stream ended; after an end, [`Recv::Gone`].
    pub async fn recv(&mut self) -> Recv {
        let Some(rx) = self.rx.as_mut() else {
            return Recv::Gone;
        };
        let r = match rx.recv().await {
            Some(Inbound::Data(b)) => return Recv::Data(b),
            Some(Inbound::Fin) => Recv::Fin,
            Some(Inbound::Reset(s)) => Recv::Reset(s),
            None => Recv::Gone,
        };
        self.rx = None;
        r
    }

    /// Whether the peer can still send (no FIN, RST or connection end seen yet).
    pub fn is_open(&self) -> bool {
        self.rx.is_some()
    }

    /// Stops reading: whatever the peer still sends on this stream is dropped.
    pub fn discard(&mut self) {
        self.rx = None;
    }
}

/// The us-to-peer half of a stream (cheap to clone).
#[derive(Clone)]
pub struct StreamSender {
    id: u32,
    shared: Arc<Shared>,
}

impl StreamSender {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Accepts the stream: SYN_REPLY with no headers, as the Go server sends.
    pub async fn reply(&self) -> Result<(), Closed> {
        self.shared
            .send(Frame::SynReply {
                stream_id: self.id,
                fin: false,
                headers: Vec::new(),
            })
            .await
    }

    /// Sends `data` in DATA frames of at most [`DATA_CHUNK`] bytes.
    pub async fn send(&self, data: &[u8]) -> Result<(), Closed> {
        for chunk in data.chunks(DATA_CHUNK) {
            self.shared
                .send(Frame::Data {
                    stream_id: self.id,
                    fin: false,
                    data: Bytes::copy_from_slice(chunk),
                })
                .await?;
        }
        Ok(())
    }

    /// Sends owned bytes without copying when they fit one frame.
    pub async fn send_bytes(&self, data: Bytes) -> Result<(), Closed> {
        if data.len() > DATA_CHUNK {
            return self.send(&data).await;
        }
        if data.is_empty() {
            return Ok(());
        }
        self.shared
            .send(Frame::Data {
                stream_id: self.id,
                fin: false,
                data,
            })
            .await
    }

    /// Half-closes our side: an empty DATA frame with FLAG_FIN (spdystream's
    /// `Stream.Close`); the peer reads EOF after everything sent before.
    pub async fn fin(&self) -> Result<(), Closed> {
        self.shared
            .send(Frame::Data {
                stream_id: self.id,
                fin: true,
                data: Bytes::new(),
            })
            .await
    }

    /// Resets the stream (RST_STREAM); data the peer still sends on it is dropped.
    pub async fn reset(&self, status: u32) -> Result<(), Closed> {
        self.shared.forget(self.id);
        self.shared
            .send(Frame::RstStream {
                stream_id: self.id,
                status,
            })
            .await
    }
}

/// A running SPDY session (server side).
pub struct Session {
    shared: Arc<Shared>,
    closed: watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Session {
    /// Starts reading and writing frames on `io`; new streams arrive on the channel,
    /// which ends when the peer sends GOAWAY or the connection ends.
    pub fn start<T>(io: T) -> (Session, mpsc::Receiver<Stream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
        let (closed_tx, closed_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            out: out_tx,
            streams: Mutex::new(HashMap::new()),
            last_stream: AtomicU32::new(0),
            going_away: AtomicBool::new(false),
        });
        let writer = tokio::spawn(write_loop(wr, out_rx));
        let reader = tokio::spawn(read_loop(rd, shared.clone(), in_tx, closed_tx));
        (
            Session {
                shared,
                closed: closed_rx,
                tasks: vec![reader, writer],
            },
            in_rx,
        )
    }

    /// Whether the peer's side of the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves once the peer has closed the connection (or it failed).
    pub async fn peer_closed(&self) {
        let mut c = self.closed.clone();
        let _ = c.wait_for(|closed| *closed).await;
    }

    /// A future resolving when the peer closed, usable after `self` moved.
    pub fn closed_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut c = self.closed.clone();
        async move {
            let _ = c.wait_for(|closed| *closed).await;
        }
    }

    /// Sends GOAWAY (status OK, last stream accepted) and refuses new streams.
    pub async fn go_away(&self) -> Result<(), Closed> {
        self.shared.going_away.store(true, Ordering::SeqCst);
        let last = self.shared.last_stream.load(Ordering::SeqCst);
        self.shared
            .send(Frame::GoAway {
                last_good_stream_id: last,
                status: spdy::GOAWAY_OK,
            })
            .await
    }

    /// Ends the session politely: GOAWAY, then a half-close of the connection
    /// after everything queued is written, then waits up to `linger` for the peer
    /// to close its side before dropping the connection.
    pub async fn close(mut self, linger: Duration) {
        if !self.is_closed() {
            let _ = self.go_away().await;
        }
        let _ = self.shared.out.send(Outbound::Close).await;
        let closed = self.closed_signal();
        let _ = tokio::time::timeout(linger, closed).await;
        // The writer finishes its queue (bounded by the same linger).
        if let Some(writer) = self.tasks.pop() {
            let _ = tokio::time::timeout(linger, writer).await;
        }
    }
}

async fn write_loop<W: AsyncWrite>(wr: W, mut rx: mpsc::Receiver<Outbound>) {
    tokio::pin!(wr);
    let Ok(mut enc) = Encoder::new() else {
        return;
    };
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut closing = false;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Batch whatever is queued into one write.
        while let Some(item) = next.take() {
            match item {
                Outbound::Frame(f) => {
                    if enc.encode(&f, &mut buf).is_err() {
                        return;
                    }
                }
                Outbound::Close => {
                    closing = true;
                    break;
                }
            }
            if buf.len() >= 256 << 10 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            buf.clear();
        }
        if closing {
            let _ = wr.shutdown().await;
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop<R: AsyncRead>(
    rd: R,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<Stream>,
    closed: watch::Sender<bool>,
) {
    tokio::pin!(rd);
    let mut incoming = Some(incoming);
    let mut dec = Decoder::with_max_frame(MAX_IN_FRAME);
    let mut buf = BytesMut::with_capacity(16 << 10);
    'conn: loop {
        loop {
            let frame = match dec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("kubelet_api: SPDY protocol error from peer: {e}");
                    let _ = shared
                        .send(Frame::GoAway {
                            last_good_stream_id: shared.last_stream.load(Ordering::SeqCst),
                            status: spdy::GOAWAY_PROTOCOL_ERROR,
                        })
                        .await;
                    break 'conn;
                }
            };
            if !handle_frame(frame, &shared, &mut incoming).await {
                break 'conn;
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if let Ok(mut m) = shared.streams.lock() {
        m.clear();
    }
    drop(incoming);
    let _ = closed.send(true);
}

/// Handles one frame from the peer; false ends the connection.
async fn handle_frame(
    frame: Frame,
    shared: &Arc<Shared>,
    incoming: &mut Option<mpsc::Sender<Stream>>,
) -> bool {
    match frame {
        Frame::SynStream {
            stream_id,
            fin,
            headers,
            ..
        } => {
            let refuse = |status| Frame::RstStream { stream_id, status };
            let exists = shared
                .streams
                .lock()
                .map(|m| m.contains_key(&stream_id))
                .unwrap_or(true);
            if exists {
                return shared.send(refuse(spdy::RST_STREAM_IN_USE)).await.is_ok();
            }
            if stream_id % 2 == 0 || stream_id <= shared.last_stream.load(Ordering::SeqCst) {
                return shared.send(refuse(spdy::RST_PROTOCOL_ERROR)).await.is_ok();
            }
            let Some(tx_in) = incoming
                .as_ref()
                .filter(|_| !shared.going_away.load(Ordering::SeqCst))
            else {
                return shared.send(refuse(spdy::RST_REFUSED_STREAM)).await.is_ok();
            };
            shared.last_stream.store(stream_id, Ordering::SeqCst);
            let (tx, rx) = mpsc::channel(STREAM_QUEUE);
            if fin {
                let _ = tx.try_send(Inbound::Fin);
            } else if let Ok(mut m) = shared.streams.lock() {
                m.insert(stream_id, tx);
            }
            let stream = Stream {
                id: stream_id,
                headers,
                reader: StreamReader { rx: Some(rx) },
                sender: StreamSender {
                    id: stream_id,
                    shared: shared.clone(),
                },
            };
            if tx_in.send(stream).await.is_err() {
                shared.forget(stream_id);
                *incoming = None;
                return shared.send(refuse(spdy::RST_REFUSED_STREAM)).await.is_ok();
            }
            true
        }
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            let tx = shared
                .streams
                .lock()
                .ok()
                .and_then(|m| m.get(&stream_id).cloned());
            let Some(tx) = tx else {
                // Unknown or finished stream: dropped, as spdystream does.
                return true;
            };
            if !data.is_empty() && tx.send(Inbound::Data(data)).await.is_err() {
                // The handler stopped reading this stream.
                shared.forget(stream_id);
                return true;
            }
            if fin {
                shared.forget(stream_id);
                let _ = tx.send(Inbound::Fin).await;
            }
            true
        }
        Frame::RstStream { stream_id, status } => {
            let tx = shared
                .streams
                .lock()
                .ok()
                .and_then(|mut m| m.remove(&stream_id));
            if let Some(tx) = tx {
                let _ = tx.send(Inbound::Reset(status)).await;
            }
            true
        }
        Frame::Ping { id } => {
            // Odd ids are the client's; even ones would answer our own (none sent).
            if id % 2 == 1 {
                return shared.send(Frame::Ping { id }).await.is_ok();
            }
            true
        }
        Frame::GoAway { .. } => {
            // No new streams; existing ones go on until the connection closes.
            *incoming = None;
            true
        }
        Frame::SynReply { .. }
        | Frame::Headers { .. }
        | Frame::Settings { .. }
        | Frame::WindowUpdate { .. }
        | Frame::Unknown { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    /// The client end of a test connection: raw frames both ways.
    struct Peer {
        io: tokio::io::DuplexStream,
        enc: Encoder,
        dec: Decoder,
        buf: BytesMut,
    }

    impl Peer {
        async fn send(&mut self, f: Frame) {
            let mut b = BytesMut::new();
            self.enc.encode(&f, &mut b).unwrap();
            self.io.write_all(&b).await.unwrap();
        }
        async fn recv(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                    return Some(f);
                }
                let n =
                    tokio::time::timeout(Duration::from_secs(5), self.io.read_buf(&mut self.buf))
                        .await
                        .expect("frame within 5 s")
                        .unwrap();
                if n == 0 {
                    return None;
                }
            }
        }
        async fn open(&mut self, id: u32, kind: &str, fin: bool) {
            self.send(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                fin,
                unidirectional: false,
                headers: vec![("streamType".into(), kind.into())],
            })
            .await;
        }
    }

    fn pair() -> (Session, mpsc::Receiver<Stream>, Peer) {
        let (a, b) = duplex(1 << 20);
        let (s, inc) = Session::start(a);
        (
            s,
            inc,
            Peer {
                io: b,
                enc: Encoder::new().unwrap(),
                dec: Decoder::new(),
                buf: BytesMut::new(),
            },
        )
    }

    #[tokio::test]
    async fn streams_reply_data_fin_and_reset() {
        let (session, mut inc, mut peer) = pair();
        peer.open(1, "stdin", false).await;
        peer.open(3, "stdout", false).await;
        let mut stdin = inc.recv().await.unwrap();
        let stdout = inc.recv().await.unwrap();
        assert_eq!(stdin.header("streamtype"), Some("stdin"));
        assert_eq!(stdout.id, 3);
        stdin.sender.reply().await.unwrap();
        stdout.sender.reply().await.unwrap();
        assert!(matches!(
            peer.recv().await,
            Some(Frame::SynReply {
                stream_id: 1,
                fin: false,
                ..
            })
        ));
        assert!(matches!(
            peer.recv().await,
            Some(Frame::SynReply { stream_id: 3, .. })
        ));
        // Data then FIN: the reader sees both, then the end stays the end.
        peer.send(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"abc"),
        })
        .await;
        peer.send(Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::from_static(b"def"),
        })
        .await;
        assert_eq!(
            stdin.reader.recv().await,
            Recv::Data(Bytes::from_static(b"abc"))
        );
        assert_eq!(
            stdin.reader.recv().await,
            Recv::Data(Bytes::from_static(b"def"))
        );
        assert_eq!(stdin.reader.recv().await, Recv::Fin);
        assert_eq!(stdin.reader.recv().await, Recv::Gone);
        // Data after FIN is dropped, not delivered.
        peer.send(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"late"),
        })
        .await;
        // Our side: big data is split, FIN is an empty DATA frame with the flag.
        let big = vec![7u8; DATA_CHUNK + 10];
        stdout.sender.send(&big).await.unwrap();
        stdout.sender.fin().await.unwrap();
        match peer.recv().await {
            Some(Frame::Data {
                stream_id: 3,
                fin: false,
                data,
            }) => assert_eq!(data.len(), DATA_CHUNK),
            other => panic!("{other:?}"),
        }
        match peer.recv().await {
            Some(Frame::Data {
                stream_id: 3,
                fin: false,
                data,
            }) => assert_eq!(data.len(), 10),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(peer.recv().await, Some(Frame::Data { stream_id: 3, fin: true, ref data }) if data.is_empty())
        );
        // The peer resets a stream.
        let mut out_reader = stdout.reader;
        peer.send(Frame::RstStream {
            stream_id: 3,
            status: spdy::RST_CANCEL,
        })
        .await;
        assert_eq!(out_reader.recv().await, Recv::Reset(spdy::RST_CANCEL));
        drop(session);
    }

    #[tokio::test]
    async fn pings_are_echoed_and_settings_ignored() {
        let (_session, _inc, mut peer) = pair();
        peer.send(Frame::Settings {
            entries: vec![(0, 7, 1 << 20)],
        })
        .await;
        peer.send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 5,
        })
        .await;
        peer.send(Frame::Ping { id: 2 }).await; // even: an answer to us, not echoed
        peer.send(Frame::Ping { id: 1 }).await;
        peer.send(Frame::Ping { id: 3 }).await;
        assert_eq!(peer.recv().await, Some(Frame::Ping { id: 1 }));
        assert_eq!(peer.recv().await, Some(Frame::Ping { id: 3 }));
    }

    #[tokio::test]
    async fn syn_stream_with_fin_and_bad_ids() {
        let (_session, mut inc, mut peer) = pair();
        peer.open(5, "error", true).await;
        let mut s = inc.recv().await.unwrap();
        assert_eq!(s.reader.recv().await, Recv::Fin);
        // Reusing an old id and even ids are refused with RST_STREAM.
        peer.open(3, "stdin", false).await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::RstStream {
                stream_id: 3,
                status: spdy::RST_PROTOCOL_ERROR
            })
        );
        peer.open(8, "stdin", false).await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::RstStream {
                stream_id: 8,
                status: spdy::RST_PROTOCOL_ERROR
            })
        );
    }

    #[tokio::test]
    async fn goaway_ends_new_streams_and_close_half_closes() {
        let (session, mut inc, mut peer) = pair();
        peer.open(1, "data", false).await;
        let mut s = inc.recv().await.unwrap();
        peer.send(Frame::GoAway {
            last_good_stream_id: 0,
            status: 0,
        })
        .await;
        assert!(inc.recv().await.is_none());
        // Existing streams still work after the peer's GOAWAY.
        peer.send(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"x"),
        })
        .await;
        assert_eq!(s.reader.recv().await, Recv::Data(Bytes::from_static(b"x")));
        let closer = tokio::spawn(session.close(Duration::from_secs(5)));
        assert_eq!(
            peer.recv().await,
            Some(Frame::GoAway {
                last_good_stream_id: 1,
                status: spdy::GOAWAY_OK
            })
        );
        // Our write side is shut: EOF after the GOAWAY.
        assert_eq!(peer.recv().await, None);
        drop(peer);
        closer.await.unwrap();
        assert_eq!(s.reader.recv().await, Recv::Gone);
    }

    #[tokio::test]
    async fn garbage_ends_the_session_with_goaway() {
        let (session, _inc, mut peer) = pair();
        peer.io
            .write_all(&[0x80, 0x02, 0, 1, 0, 0, 0, 0])
            .await
            .unwrap();
        assert!(matches!(
            peer.recv().await,
            Some(Frame::GoAway {
                status: spdy::GOAWAY_PROTOCOL_ERROR,
                ..
            })
        ));
        session.peer_closed().await;
        assert!(session.is_closed());
    }
}
