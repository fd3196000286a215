//! A raw HTTP/2 server (prior knowledge, plain TCP on 127.0.0.1) that writes its frames by hand,
//! for the faults a library server would not produce on request: a GOAWAY keeping a given last
//! stream, REFUSED_STREAM, a connection that stops answering, PINGs included. It records every
//! request it processed (answered), by connection and body.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;
/// RFC 9113 §7.
pub const REFUSED_STREAM: u32 = 0x7;

/// What one connection does.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Answers every request 200 `{}`.
    Answer,
    /// Answers the first `n` requests, then nothing at all (PINGs included), the socket left
    /// open: a frozen server, or a network that dropped the path.
    SilentAfter(usize),
    /// Waits until `requests` requests have arrived whole, then sends `GOAWAY(last, NO_ERROR)`,
    /// answers the streams up to `last` and closes the connection.
    GoAway { requests: usize, last: u32 },
    /// Refuses its first `n` streams with `RST_STREAM(REFUSED_STREAM)`, answers the rest.
    Refuse(usize),
    /// Answers every request after `delay`, allowing one stream at a time
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS = 1`).
    OneAtATime(std::time::Duration),
}

/// A request the server processed.
#[derive(Clone, Debug)]
pub struct Processed {
    /// Which connection, counted from 0.
    pub connection: usize,
    pub stream: u32,
    pub body: Vec<u8>,
}

/// What the server saw.
#[derive(Clone, Default)]
pub struct Seen {
    pub accepted: Arc<AtomicUsize>,
    pub processed: Arc<Mutex<Vec<Processed>>>,
    /// Streams received, processed or not.
    pub streams: Arc<AtomicUsize>,
}

impl Seen {
    pub fn processed(&self) -> Vec<Processed> {
        self.processed.lock().expect("lock").clone()
    }
}

/// Serves connection `i` (from 0) with `plan(i)`.
pub async fn serve(
    plan: impl Fn(usize) -> Behaviour + Send + Sync + 'static,
) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Seen::default();
    let state = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // Frames go out as written: no small write waits for the peer's delayed ACK, a
            // wait that tests on paused time would see as idle time.
            let _ = tcp.set_nodelay(true);
            let connection = state.accepted.fetch_add(1, Ordering::SeqCst);
            let behaviour = plan(connection);
            let state = state.clone();
            tokio::spawn(async move {
                let _ = Conn::new(tcp, connection, behaviour, state).run().await;
            });
        }
    });
    (addr, seen)
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A request being received.
struct Incoming {
    stream: u32,
    headers_done: bool,
    body: Vec<u8>,
}

struct Conn {
    tcp: TcpStream,
    connection: usize,
    behaviour: Behaviour,
    seen: Seen,
    open: Vec<Incoming>,
    /// Complete requests not answered yet.
    waiting: Vec<(u32, Vec<u8>)>,
    answered: usize,
    refused: usize,
    silent: bool,
}

impl Conn {
    fn new(tcp: TcpStream, connection: usize, behaviour: Behaviour, seen: Seen) -> Self {
        Self {
            tcp,
            connection,
            behaviour,
            seen,
            open: Vec::new(),
            waiting: Vec::new(),
            answered: 0,
            refused: 0,
            silent: false,
        }
    }

    async fn read_frame(&mut self) -> std::io::Result<Frame> {
        let mut head = [0u8; 9];
        self.tcp.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        self.tcp.read_exact(&mut payload).await?;
        Ok(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        })
    }

    async fn write_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = u32::try_from(payload.len()).expect("small").to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        let _ = self.tcp.write_all(&frame).await;
    }

    async fn run(mut self) -> std::io::Result<()> {
        let mut preface = [0u8; 24];
        self.tcp.read_exact(&mut preface).await?;
        assert_eq!(
            &preface[..],
            PREFACE,
            "an HTTP/2 client with prior knowledge"
        );
        let settings: Vec<u8> = match self.behaviour {
            // SETTINGS_MAX_CONCURRENT_STREAMS = 1
            Behaviour::OneAtATime(_) => vec![0, 3, 0, 0, 0, 1],
            _ => Vec::new(),
        };
        self.write_frame(SETTINGS, 0, 0, &settings).await;
        loop {
            let frame = self.read_frame().await?;
            if self.silent {
                continue;
            }
            match frame.kind {
                SETTINGS if frame.flags & ACK == 0 => self.write_frame(SETTINGS, ACK, 0, &[]).await,
                PING if frame.flags & ACK == 0 => {
                    self.write_frame(PING, ACK, 0, &frame.payload).await;
                }
                HEADERS | CONTINUATION | DATA => {
                    if let Some(done) = self.receive(&frame) {
                        self.waiting.push(done);
                        if self.act().await {
                            return Ok(());
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Takes a HEADERS, CONTINUATION or DATA frame; returns a request that is now whole.
    fn receive(&mut self, frame: &Frame) -> Option<(u32, Vec<u8>)> {
        if frame.kind == HEADERS {
            self.seen.streams.fetch_add(1, Ordering::SeqCst);
            self.open.push(Incoming {
                stream: frame.stream,
                headers_done: frame.flags & END_HEADERS != 0,
                body: Vec::new(),
            });
        }
        let at = self.open.iter().position(|s| s.stream == frame.stream)?;
        match frame.kind {
            CONTINUATION => self.open[at].headers_done |= frame.flags & END_HEADERS != 0,
            DATA => {
                let mut data = &frame.payload[..];
                if frame.flags & PADDED != 0 && !data.is_empty() {
                    let pad = usize::from(data[0]);
                    data = &data[1..data.len().saturating_sub(pad)];
                }
                self.open[at].body.extend_from_slice(data);
            }
            _ => {
                let _ = frame.flags & PRIORITY_FLAG;
            }
        }
        let ended = frame.flags & END_STREAM != 0 && frame.kind != CONTINUATION;
        (ended && self.open[at].headers_done).then(|| {
            let done = self.open.remove(at);
            (done.stream, done.body)
        })
    }

    async fn answer(&mut self, stream: u32, body: Vec<u8>) {
        // HPACK: indexed ":status: 200" (static table entry 8).
        self.write_frame(HEADERS, END_HEADERS, stream, &[0x88])
            .await;
        self.write_frame(DATA, END_STREAM, stream, b"{}").await;
        self.answered += 1;
        self.seen.processed.lock().expect("lock").push(Processed {
            connection: self.connection,
            stream,
            body,
        });
    }

    /// Acts on the requests waiting; `true` when the connection is to be closed.
    async fn act(&mut self) -> bool {
        match self.behaviour.clone() {
            Behaviour::Answer => self.answer_all().await,
            Behaviour::SilentAfter(n) => {
                while self.answered < n && !self.waiting.is_empty() {
                    let (stream, body) = self.waiting.remove(0);
                    self.answer(stream, body).await;
                }
                if self.answered >= n {
                    self.silent = true;
                }
            }
            Behaviour::GoAway { requests, last } => {
                if self.waiting.len() >= requests {
                    let mut payload = last.to_be_bytes().to_vec();
                    payload.extend_from_slice(&0u32.to_be_bytes());
                    self.write_frame(GOAWAY, 0, 0, &payload).await;
                    let kept: Vec<_> = self
                        .waiting
                        .drain(..)
                        .filter(|(stream, _)| *stream <= last)
                        .collect();
                    for (stream, body) in kept {
                        self.answer(stream, body).await;
                    }
                    let _ = self.tcp.flush().await;
                    return true;
                }
            }
            Behaviour::Refuse(n) => {
                while let Some((stream, body)) = self.waiting.pop() {
                    if self.refused < n {
                        self.refused += 1;
                        self.write_frame(RST_STREAM, 0, stream, &REFUSED_STREAM.to_be_bytes())
                            .await;
                    } else {
                        self.answer(stream, body).await;
                    }
                }
            }
            Behaviour::OneAtATime(delay) => {
                tokio::time::sleep(delay).await;
                self.answer_all().await;
            }
        }
        false
    }

    async fn answer_all(&mut self) {
        for (stream, body) in std::mem::take(&mut self.waiting) {
            self.answer(stream, body).await;
        }
    }
}
