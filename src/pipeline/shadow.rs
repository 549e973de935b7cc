//! Zero-copy forwarding between two plugins (Linux).
//!
//! The reader duplicates what the producer wrote into a private *shadow* pipe with tee(2) and
//! then reads the same bytes to check them; checked bytes reach the consumer by splice(2) from
//! the shadow, which hands the kernel's pages over instead of copying them back out of dsm. A
//! line is never passed on before it is checked: the shadow only lets go of what the reader
//! says is good. Bytes the reader rewrites or drops are discarded from the shadow instead.
//!
//! The shadow's room is shared: the reader may not duplicate more than the shadow holds, and
//! the writer frees room as it forwards. When the shadow holds nothing but the reader's own
//! unfinished line (a line longer than the shadow), the reader stops mirroring those bytes and
//! sends them by copy ([`TeeRead::Full`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::Notify;

use crate::plugin::sys;

/// How full the shadow is, shared by both sides.
struct Room {
    capacity: usize,
    /// Bytes duplicated into the shadow and not yet forwarded or discarded.
    used: AtomicUsize,
    /// Signalled each time the writer frees room.
    freed: Notify,
}

/// The reader's side: the producer's stdout and the shadow's input.
pub(super) struct TeeSide {
    source: AsyncFd<File>,
    shadow: io::PipeWriter,
    room: Arc<Room>,
    /// Set once the shadow refused the producer's pipe buffers while empty (a shadow too
    /// small for them): from then on bytes are read plainly and go on by copy.
    plain: bool,
}

/// The writer's side: the consumer's stdin and the shadow's output.
pub(super) struct SpliceSide {
    sink: AsyncFd<File>,
    shadow: io::PipeReader,
    room: Arc<Room>,
    scratch: Vec<u8>,
}

/// What [`TeeSide::read`] got.
pub(super) enum TeeRead {
    /// This many bytes, now in the buffer and mirrored in the shadow.
    Data(usize),
    /// This many bytes, now in the buffer and not in the shadow (they go on by copy).
    Copied(usize),
    /// The producer closed its output and everything was read.
    Eof,
    /// The shadow is full of the caller's own unforwarded bytes: the caller must discard them
    /// from the shadow and send them by copy.
    Full,
}

/// Sets up zero-copy forwarding from `stdout` to `stdin`, with a shadow pipe of about
/// `pipe_bytes`.
pub(super) fn open(
    stdout: ChildStdout,
    stdin: ChildStdin,
    pipe_bytes: usize,
) -> io::Result<(TeeSide, SpliceSide)> {
    let (shadow_out, shadow_in) = io::pipe()?;
    if pipe_bytes > 0 {
        sys::grow_pipe(&shadow_in, pipe_bytes);
    }
    let capacity = sys::pipe_capacity(shadow_in.as_fd())?;
    let room = Arc::new(Room {
        capacity,
        used: AtomicUsize::new(0),
        freed: Notify::new(),
    });
    // tokio hands the fds back in blocking mode; AsyncFd needs them non-blocking.
    let source = File::from(stdout.into_owned_fd()?);
    sys::set_nonblocking(source.as_fd())?;
    let source = register(source, Interest::READABLE)?;
    let sink = File::from(stdin.into_owned_fd()?);
    sys::set_nonblocking(sink.as_fd())?;
    let sink = register(sink, Interest::WRITABLE)?;
    Ok((
        TeeSide {
            source,
            shadow: shadow_in,
            room: room.clone(),
            plain: false,
        },
        SpliceSide {
            sink,
            shadow: shadow_out,
            room,
            scratch: Vec::new(),
        },
    ))
}

/// Registers an owned pipe end with the runtime's reactor.
#[allow(unsafe_code)]
fn register(file: File, interest: Interest) -> io::Result<AsyncFd<File>> {
    // SAFETY: the `File` owns its descriptor: it stays open, and `as_raw_fd` returns the same
    // one, for as long as the `AsyncFd` that takes the `File` lives.
    unsafe { AsyncFd::register_with_interest(file, interest) }.map_err(io::Error::from)
}

impl TeeSide {
    /// Reads what the producer wrote into `buf`, leaving a copy in the shadow. `held`: how many
    /// of the bytes in the shadow are the caller's own, not yet sent on.
    pub async fn read(&mut self, buf: &mut [u8], held: usize) -> io::Result<TeeRead> {
        if self.plain {
            return self.read_plain(buf).await;
        }
        loop {
            let used = self.room.used.load(Ordering::Acquire);
            let free = self.room.capacity.saturating_sub(used);
            let want = free.min(buf.len());
            if want == 0 {
                if used <= held {
                    return Ok(TeeRead::Full);
                }
                self.room.freed.notified().await;
                continue;
            }
            match sys::tee(self.source.get_ref().as_fd(), self.shadow.as_fd(), want) {
                Ok(0) => return Ok(TeeRead::Eof),
                Ok(n) => {
                    self.room.used.fetch_add(n, Ordering::AcqRel);
                    // The bytes are in the pipe (tee left them there): reading them cannot
                    // block.
                    let mut got = 0;
                    while got < n {
                        let mut source: &File = self.source.get_ref();
                        match source.read(&mut buf[got..n]) {
                            Ok(0) => {
                                return Err(io::Error::other(
                                    "the pipe lost bytes it had duplicated",
                                ));
                            }
                            Ok(k) => got += k,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    return Ok(TeeRead::Data(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Either the producer has written nothing new, or the shadow ran out of
                    // buffer slots (small writes fill slots before bytes; and once the
                    // producer is gone, a full shadow is the only reason left).
                    if sys::pipe_pending(self.source.get_ref().as_fd())? == 0 {
                        let mut ready = self.source.readable().await?;
                        if !ready.ready().is_read_closed() {
                            // Clears the readiness only if no new event came since
                            // `readable` (tokio keeps the tick), so a write landing now is not
                            // missed.
                            let _ =
                                ready.try_io(|fd| match sys::pipe_pending(fd.get_ref().as_fd())? {
                                    0 => Err(io::ErrorKind::WouldBlock.into()),
                                    _ => Ok(()),
                                });
                            continue;
                        }
                        if used == 0 && sys::pipe_pending(self.source.get_ref().as_fd())? == 0 {
                            return Ok(TeeRead::Eof);
                        }
                    }
                    if used == 0 {
                        // An empty shadow that takes none of the producer's buffers.
                        self.plain = true;
                        return self.read_plain(buf).await;
                    }
                    if used <= held {
                        return Ok(TeeRead::Full);
                    }
                    self.room.freed.notified().await;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl TeeSide {
    /// A plain read of what the producer wrote, waiting for it if need be.
    async fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<TeeRead> {
        loop {
            let mut ready = self.source.readable().await?;
            match ready.try_io(|fd| {
                let mut source: &File = fd.get_ref();
                source.read(buf)
            }) {
                Ok(Ok(0)) => return Ok(TeeRead::Eof),
                Ok(Ok(n)) => return Ok(TeeRead::Copied(n)),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

impl SpliceSide {
    /// Moves the next `n` bytes of the shadow into the consumer's input.
    pub async fn forward(&mut self, n: usize) -> io::Result<()> {
        let mut left = n;
        while left > 0 {
            let mut ready = self.sink.writable().await?;
            let shadow = self.shadow.as_fd();
            match ready.try_io(|fd| sys::splice(shadow, fd.get_ref().as_fd(), left)) {
                Ok(Ok(0)) => return Err(io::Error::other("the shadow pipe ran dry")),
                Ok(Ok(k)) => {
                    left -= k;
                    self.release(k);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Drops the next `n` bytes of the shadow (the reader sends something else in their place).
    pub fn discard(&mut self, n: usize) -> io::Result<()> {
        self.scratch.resize(n.min(1 << 16), 0);
        let mut left = n;
        while left > 0 {
            let take = left.min(self.scratch.len());
            // The bytes were duplicated into the shadow before the reader asked: no waiting.
            let k = self.shadow.read(&mut self.scratch[..take])?;
            if k == 0 {
                return Err(io::Error::other("the shadow pipe ran dry"));
            }
            left -= k;
            self.release(k);
        }
        Ok(())
    }

    /// Writes `bytes` to the consumer's input.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < bytes.len() {
            let mut ready = self.sink.writable().await?;
            match ready.try_io(|fd| {
                let mut sink: &File = fd.get_ref();
                sink.write(&bytes[done..])
            }) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(k)) => done += k,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    fn release(&self, n: usize) {
        self.room.used.fetch_sub(n, Ordering::AcqRel);
        self.room.freed.notify_one();
    }
}
