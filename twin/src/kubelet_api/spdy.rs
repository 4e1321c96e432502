//! SPDY/3.1 framing: the frame codec and the zlib header-block compression.
//!
//! Contract: [`Encoder`] turns [`Frame`]s into bytes and [`Decoder`] turns bytes back
//! into frames, each owning one zlib stream for the header blocks of its direction
//! (SYN_STREAM, SYN_REPLY, HEADERS), primed with the SPDY/3 dictionary and
//! sync-flushed after every block, exactly as the Go framer that kube-apiserver and
//! the kubelet use (github.com/moby/spdystream/spdy, read.go/write.go/types.go, a
//! fork of the old go.net/spdy; vendored by k8s.io/apimachinery/pkg/util/httpstream/spdy
//! and, in 1.37, k8s.io/streaming/pkg/httpstream/spdy). Header blocks carry 32-bit
//! counts and lengths, lowercase names, and multiple values joined by NUL.
//!
//! Everything here is reached from the network: no panics, bounded sizes
//! ([`MAX_FRAME`], [`MAX_HEADERS`], [`MAX_HEADER_FIELD`], [`MAX_HEADER_BLOCK`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes (SPDY/3 §2.4.2).
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_INVALID_STREAM: u32 = 2;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;
pub const RST_INTERNAL_ERROR: u32 = 6;
pub const RST_STREAM_IN_USE: u32 = 8;

/// GOAWAY status codes.
pub const GOAWAY_OK: u32 = 0;
pub const GOAWAY_PROTOCOL_ERROR: u32 = 1;

/// The largest payload a frame may carry (24-bit length).
pub const MAX_FRAME: usize = (1 << 24) - 1;
/// The most name/value pairs accepted in one header block (spdystream's default).
pub const MAX_HEADERS: u32 = 1000;
/// The longest header name or value accepted.
pub const MAX_HEADER_FIELD: u32 = 1 << 20;
/// The most bytes one header block may inflate to (guards against zlib bombs).
pub const MAX_HEADER_BLOCK: usize = 4 << 20;

/// Name/value pairs of a header block, names lowercase, in wire order; a name may
/// repeat (one pair per value after splitting on NUL).
pub type Headers = Vec<(String, String)>;

/// The first value of `name` (case-insensitive: the Go framer lowercases names).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One SPDY/3.1 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// (flags, id, value) triples.
    Settings {
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame of a type this codec does not know (skipped, as SPDY/3 asks).
    Unknown {
        frame_type: u16,
        flags: u8,
        payload: Bytes,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("SPDY frame of {0} bytes is larger than allowed")]
    FrameTooLarge(usize),
    #[error("SPDY header compression: {0}")]
    Compression(String),
    #[error("SPDY connection I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn protocol(msg: impl Into<String>) -> SpdyError {
    SpdyError::Protocol(msg.into())
}

// ----- header blocks ----------------------------------------------------------------

/// The uncompressed header block: u32 count, then (u32 len, name, u32 len, value)*.
/// Names are lowercased; values of a repeated name are joined with NUL, as the Go
/// framer writes them.
pub fn encode_header_block(headers: &Headers) -> Vec<u8> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => merged.push((name, value.clone())),
        }
    }
    let mut out = Vec::new();
    out.put_u32(merged.len() as u32);
    for (name, value) in merged {
        out.put_u32(name.len() as u32);
        out.put_slice(name.as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
    out
}

/// Parses an uncompressed header block. Names are lowercased (the Go reader flags
/// uppercase names as an error but still uses them; so does this, leniently).
pub fn decode_header_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    fn take_u32(b: &mut &[u8]) -> Result<u32, SpdyError> {
        if b.len() < 4 {
            return Err(protocol("truncated header block"));
        }
        Ok(b.get_u32())
    }
    fn take_str(b: &mut &[u8]) -> Result<String, SpdyError> {
        let len = take_u32(b)?;
        if len > MAX_HEADER_FIELD {
            return Err(protocol(format!("header field of {len} bytes")));
        }
        let len = len as usize;
        if b.len() < len {
            return Err(protocol("truncated header block"));
        }
        let s = String::from_utf8_lossy(&b[..len]).into_owned();
        b.advance(len);
        Ok(s)
    }
    let count = take_u32(&mut block)?;
    if count > MAX_HEADERS {
        return Err(protocol(format!("{count} headers in one block")));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name = take_str(&mut block)?.to_ascii_lowercase();
        let value = take_str(&mut block)?;
        for v in value.split('\0') {
            headers.push((name.clone(), v.to_string()));
        }
    }
    Ok(headers)
}

/// The sending side's zlib stream (one per connection direction).
pub struct HeaderCompressor {
    z: Compress,
}

impl HeaderCompressor {
    pub fn new() -> Result<HeaderCompressor, SpdyError> {
        // As Go's zlib.NewWriterLevelDict(w, BestCompression, dictionary): a zlib
        // header whose FDICT bit names the dictionary's Adler-32.
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(DICTIONARY)
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        Ok(HeaderCompressor { z })
    }

    /// Compresses one header block and sync-flushes, so the block is complete in
    /// this frame while the stream (and its window) goes on into the next.
    pub fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = block;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before_in = self.z.total_in();
            let status = self
                .z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used.min(input.len())..];
            // Done when all input is in and the flush fit in the spare room.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            if matches!(status, Status::StreamEnd) {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's zlib stream (one per connection direction).
pub struct HeaderDecompressor {
    z: Decompress,
    dictionary_set: bool,
}

impl HeaderDecompressor {
    pub fn new() -> HeaderDecompressor {
        HeaderDecompressor {
            z: Decompress::new(true),
            dictionary_set: false,
        }
    }

    /// Inflates one frame's compressed header bytes (all of them must be consumed,
    /// as the Go reader's WrongCompressedPayloadSize check demands).
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out: Vec<u8> = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut input = compressed;
        let mut stalled = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::Compression(
                        "header block inflates past the limit".into(),
                    ));
                }
                out.reserve(out.capacity().max(1024));
            }
            let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
            let result = self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used.min(input.len())..];
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::Compression(
                        "header zlib stream ended (the peer must never finish it)".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(_) if !self.dictionary_set => {
                        self.z
                            .set_dictionary(DICTIONARY)
                            .map_err(|e| SpdyError::Compression(e.to_string()))?;
                        self.dictionary_set = true;
                        continue;
                    }
                    _ => return Err(SpdyError::Compression(e.to_string())),
                },
            }
            let progressed = self.z.total_in() != before_in || self.z.total_out() != before_out;
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            if progressed {
                stalled = 0;
            } else {
                stalled += 1;
                if stalled > 2 {
                    return Err(SpdyError::Compression(
                        "header block does not inflate".into(),
                    ));
                }
            }
        }
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

// ----- frames -----------------------------------------------------------------------

fn control_header(out: &mut BytesMut, frame_type: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_type);
    out.put_u32(((flags as u32) << 24) | (len as u32 & 0x00ff_ffff));
}

/// Writes frames, compressing header blocks on its own zlib stream.
pub struct Encoder {
    headers: HeaderCompressor,
}

impl Encoder {
    pub fn new() -> Result<Encoder, SpdyError> {
        Ok(Encoder {
            headers: HeaderCompressor::new()?,
        })
    }

    /// Appends the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        let fl = |fin: bool| if fin { FLAG_FIN } else { 0 };
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if data.len() > MAX_FRAME {
                    return Err(SpdyError::FrameTooLarge(data.len()));
                }
                out.reserve(8 + data.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(((fl(*fin) as u32) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                fin,
                unidirectional,
                headers,
            } => {
                let block = self.headers.compress(&encode_header_block(headers))?;
                let len = 10 + block.len();
                if len > MAX_FRAME {
                    return Err(SpdyError::FrameTooLarge(len));
                }
                let flags = fl(*fin)
                    | if *unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                control_header(out, TYPE_SYN_STREAM, flags, len);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x07) << 5);
                out.put_u8(*slot);
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
            | Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let ty = if matches!(frame, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                let block = self.headers.compress(&encode_header_block(headers))?;
                let len = 4 + block.len();
                if len > MAX_FRAME {
                    return Err(SpdyError::FrameTooLarge(len));
                }
                control_header(out, ty, fl(*fin), len);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, TYPE_RST_STREAM, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings { entries } => {
                let len = 4 + entries.len() * 8;
                if len > MAX_FRAME {
                    return Err(SpdyError::FrameTooLarge(len));
                }
                control_header(out, TYPE_SETTINGS, 0, len);
                out.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    out.put_u32(((*flags as u32) << 24) | (id & 0x00ff_ffff));
                    out.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                control_header(out, TYPE_PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, TYPE_GOAWAY, 0, 8);
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, TYPE_WINDOW_UPDATE, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
            Frame::Unknown {
                frame_type,
                flags,
                payload,
            } => {
                if payload.len() > MAX_FRAME {
                    return Err(SpdyError::FrameTooLarge(payload.len()));
                }
                control_header(out, *frame_type, *flags, payload.len());
                out.put_slice(payload);
            }
        }
        Ok(())
    }
}

/// Reads frames, inflating header blocks on its own zlib stream.
pub struct Decoder {
    headers: HeaderDecompressor,
    max_frame: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            headers: HeaderDecompressor::new(),
            max_frame: MAX_FRAME,
        }
    }

    /// A decoder refusing frames whose payload exceeds `max` bytes.
    pub fn with_max_frame(max: usize) -> Decoder {
        Decoder {
            headers: HeaderDecompressor::new(),
            max_frame: max.min(MAX_FRAME),
        }
    }

    /// Takes one whole frame off the front of `buf`; `Ok(None)` until one has
    /// arrived completely.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let flags = buf[4];
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if len > self.max_frame {
            return Err(SpdyError::FrameTooLarge(len));
        }
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        buf.advance(8);
        let mut payload = buf.split_to(len).freeze();
        if first & 0x8000_0000 == 0 {
            let stream_id = first & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(protocol("DATA frame on stream 0"));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(protocol(format!("unsupported SPDY version {version}")));
        }
        let frame_type = (first & 0xffff) as u16;
        let need = |n: usize| -> Result<(), SpdyError> {
            if len < n {
                Err(protocol(format!(
                    "control frame type {frame_type} of {len} bytes is too short"
                )))
            } else {
                Ok(())
            }
        };
        let fin = flags & FLAG_FIN != 0;
        let frame = match frame_type {
            TYPE_SYN_STREAM => {
                need(10)?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let associated_to = payload.get_u32() & 0x7fff_ffff;
                let priority = payload.get_u8() >> 5;
                let slot = payload.get_u8();
                let headers = decode_header_block(&self.headers.decompress(&payload)?)?;
                if stream_id == 0 {
                    return Err(protocol("SYN_STREAM for stream 0"));
                }
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                need(4)?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let headers = decode_header_block(&self.headers.decompress(&payload)?)?;
                if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => {
                need(8)?;
                Frame::RstStream {
                    stream_id: payload.get_u32() & 0x7fff_ffff,
                    status: payload.get_u32(),
                }
            }
            TYPE_SETTINGS => {
                need(4)?;
                let n = payload.get_u32() as usize;
                if n > payload.len() / 8 {
                    return Err(protocol("SETTINGS count exceeds the frame"));
                }
                let entries = (0..n)
                    .map(|_| {
                        let id = payload.get_u32();
                        ((id >> 24) as u8, id & 0x00ff_ffff, payload.get_u32())
                    })
                    .collect();
                Frame::Settings { entries }
            }
            TYPE_PING => {
                need(4)?;
                Frame::Ping {
                    id: payload.get_u32(),
                }
            }
            TYPE_GOAWAY => {
                need(4)?;
                let last_good_stream_id = payload.get_u32() & 0x7fff_ffff;
                // SPDY/2 GOAWAY had no status; be lenient.
                let status = if payload.len() >= 4 {
                    payload.get_u32()
                } else {
                    GOAWAY_OK
                };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate {
                    stream_id: payload.get_u32() & 0x7fff_ffff,
                    delta: payload.get_u32() & 0x7fff_ffff,
                }
            }
            _ => Frame::Unknown {
                frame_type,
                flags,
                payload,
            },
        };
        Ok(Some(frame))
    }
}

/// The SPDY/3 header-compression dictionary (SPDY/3 draft §2.6.10.1; the same bytes
/// as moby/spdystream/spdy/dictionary.go). 1423 bytes, Adler-32 0xe3c6a7c2.
pub const DICTIONARY: &[u8] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03p\
    ut\x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0e\
    accept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\
    \x00\x00\x0daccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0d\
    authorization\x00\x00\x00\x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\
    \x0ccontent-base\x00\x00\x00\x10content-encoding\x00\x00\x00\x10content-language\
    \x00\x00\x00\x0econtent-length\x00\x00\x00\x10content-location\x00\x00\x00\x0bco\
    ntent-md5\x00\x00\x00\x0dcontent-range\x00\x00\x00\x0ccontent-type\x00\x00\x00\x04\
    date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\x00\x00\x07expires\x00\x00\x00\
    \x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\x00\x00\x11if-modified-\
    since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\x00\x00\x13if-unm\
    odified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\x00\x00\x0c\
    max-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\x00\
    \x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0b\
    retry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\
    \x00\x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\
    \x00\x04vary\x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authen\
    ticate\x00\x00\x00\x06method\x00\x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\
    \x06200\x20OK\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\
    \x00\x00\x06public\x00\x00\x00\x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\
    \x06origin1001012012022052063003023033043053063074024054064074084094104114124134\
    14415416417502504505203\x20Non-Authoritative\x20Information204\x20No\x20Content3\
    01\x20Moved\x20Permanently400\x20Bad\x20Request401\x20Unauthorized403\x20Forbidd\
    en404\x20Not\x20Found500\x20Internal\x20Server\x20Error501\x20Not\x20Implemented\
    503\x20Service\x20UnavailableJan\x20Feb\x20Mar\x20Apr\x20May\x20Jun\x20Jul\x20Au\
    g\x20Sept\x20Oct\x20Nov\x20Dec\x2000:00:00\x20Mon,\x20Tue,\x20Wed,\x20Thu,\x20Fr\
    i,\x20Sat,\x20Sun,\x20GMTchunked,text/html,image/png,image/jpg,image/gif,applica\
    tion/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=g\
    zip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(enc: &mut Encoder, dec: &mut Decoder, frame: Frame) {
        let mut buf = BytesMut::new();
        enc.encode(&frame, &mut buf).expect("encode");
        let got = dec.decode(&mut buf).expect("decode").expect("whole frame");
        assert_eq!(got, frame);
        assert!(buf.is_empty(), "frame fully consumed");
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn dictionary_is_spdy3() {
        assert_eq!(DICTIONARY.len(), 1423);
        // Adler-32 as zlib's FDICT field names it.
        let (mut a, mut b) = (1u32, 0u32);
        for &x in DICTIONARY {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn every_frame_type_roundtrips() {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new();
        let frames = vec![
            Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::new(),
            },
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 7,
                slot: 0,
                fin: false,
                unidirectional: false,
                headers: hdrs(&[("streamtype", "error")]),
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 1,
                fin: true,
                headers: hdrs(&[("a", "b")]),
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::Settings {
                entries: vec![(1, 7, 65536), (0, 4, 100)],
            },
            Frame::Ping { id: 0x7fff_fffd },
            Frame::GoAway {
                last_good_stream_id: 9,
                status: GOAWAY_OK,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 4096,
            },
            Frame::Unknown {
                frame_type: 0x77,
                flags: 3,
                payload: Bytes::from_static(b"xyz"),
            },
        ];
        for f in frames {
            roundtrip(&mut enc, &mut dec, f);
        }
    }

    #[test]
    fn header_blocks_share_one_zlib_stream_per_direction() {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new();
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        for i in 0..20u32 {
            let f = Frame::SynStream {
                stream_id: 2 * i + 1,
                associated_to: 0,
                priority: 0,
                slot: 0,
                fin: false,
                unidirectional: false,
                headers: hdrs(&[
                    ("streamtype", if i % 2 == 0 { "data" } else { "error" }),
                    ("port", "8080"),
                    ("requestid", i.to_string().as_str()),
                ]),
            };
            enc.encode(&f, &mut wire).unwrap();
            sent.push(f);
        }
        // Later blocks reuse the window: much smaller than the first.
        let total = wire.len();
        assert!(total < 20 * 60, "compressed poorly: {total} bytes");
        // Fed in awkward pieces, every frame comes back in order.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(7) {
            buf.extend_from_slice(chunk);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, sent);
        // A fresh decoder (a new zlib stream) cannot read a later frame alone.
        let mut enc2 = Encoder::new().unwrap();
        let mut first = BytesMut::new();
        enc2.encode(&sent[0], &mut first).unwrap();
        let mut second = BytesMut::new();
        enc2.encode(&sent[1], &mut second).unwrap();
        assert!(Decoder::new().decode(&mut second).is_err());
    }

    #[test]
    fn zlib_header_names_the_dictionary() {
        let mut c = HeaderCompressor::new().unwrap();
        let out = c.compress(&encode_header_block(&vec![])).unwrap();
        // CMF/FLG with FDICT set, then the dictionary's Adler-32.
        assert_eq!(out[0] & 0x0f, 8);
        assert_ne!(out[1] & 0x20, 0);
        assert_eq!(&out[2..6], &0xe3c6_a7c2u32.to_be_bytes());
        // Sync flush: ends with an empty stored block.
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0xff, 0xff]);
    }

    #[test]
    fn repeated_names_join_with_nul_and_split_back() {
        let h = hdrs(&[
            ("X-Stream-Protocol-Version", "v4"),
            ("x-stream-protocol-version", "v3"),
        ]);
        let block = encode_header_block(&h);
        let back = decode_header_block(&block).unwrap();
        assert_eq!(
            back,
            hdrs(&[
                ("x-stream-protocol-version", "v4"),
                ("x-stream-protocol-version", "v3")
            ])
        );
        assert_eq!(header(&back, "X-Stream-Protocol-Version"), Some("v4"));
    }

    #[test]
    fn partial_frames_wait_and_bad_frames_fail() {
        let mut dec = Decoder::new();
        let mut buf = BytesMut::from(&[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00][..]);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[0x04, 0, 0, 0]);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[9]);
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(Frame::Ping { id: 9 }));
        // Version 2 is refused; a short RST_STREAM too; oversized frames too.
        let mut v2 = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(dec.decode(&mut v2).is_err());
        let mut short = BytesMut::from(&[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(Decoder::new().decode(&mut short).is_err());
        let mut big = BytesMut::from(&[0, 0, 0, 1, 0, 0x10, 0, 0][..]);
        assert!(Decoder::with_max_frame(1024).decode(&mut big).is_err());
        // Garbage where a header block should be.
        let mut junk = BytesMut::new();
        control_header(&mut junk, TYPE_SYN_REPLY, 0, 8);
        junk.put_u32(1);
        junk.put_u32(0xdead_beef);
        assert!(Decoder::new().decode(&mut junk).is_err());
    }

    #[test]
    fn large_header_blocks_compress_and_inflate() {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new();
        let big: String = (0..50_000)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        roundtrip(
            &mut enc,
            &mut dec,
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: hdrs(&[("x-big", big.as_str()), ("x-small", "1")]),
            },
        );
    }
}
